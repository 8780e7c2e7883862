"""Inspect, check, convert and compute statistics of episode stores."""

from __future__ import annotations

import argparse
import json
from typing import Any

from visuomotor.errors import InvalidInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="episodes, frames, keys, tasks, fps, size on disk")
    info.add_argument("path", help="episode store (zarr v3, or a Diffusion Policy zarr v2 store)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--check", action="store_true", help="also verify the store (as `dataset verify`)")
    verify = sub.add_parser(
        "verify", help="read every chunk, verify every checksum and the metadata; exit 1 on any problem"
    )
    verify.add_argument("path")
    verify.add_argument(
        "--repair",
        metavar="OUT",
        help="write a new store OUT without the damaged episodes (the original is kept)",
    )
    conv = sub.add_parser(
        "convert",
        help="convert SRC (a Diffusion Policy zarr store, a LeRobot v3 dataset, a robomimic hdf5) into a new "
        "zarr v3 store DST, or a store into a LeRobot dataset (--to lerobot); re-run to resume a killed one",
    )
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument(
        "--to", choices=("store", "lerobot"), default="store", help="what DST becomes (default: store)"
    )
    conv.add_argument("--repo-id", metavar="NAME", help="the LeRobot dataset's repo id (with --to lerobot)")
    conv.add_argument("--fps", type=int, help="the result's frame rate (default: the source's)")
    conv.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="rename a key")
    conv.add_argument(
        "--env-id", action="append", default=[], metavar="ID", help="keep only episodes recorded in this env"
    )
    stats = sub.add_parser("stats", help="compute normalisation statistics and save them in the store")
    stats.add_argument("path")
    stats.add_argument("--keys", nargs="*", default=None)


def _format_info(info: dict) -> str:
    lines = [
        f"store      {info['path']} (zarr v{info['zarr_format']})",
        f"episodes   {info['episodes']}",
        f"frames     {info['frames']}  (length min/mean/max {info['episode_length']['min']}/"
        f"{info['episode_length']['mean']:.1f}/{info['episode_length']['max']})",
        f"fps        {info['fps']}",
        f"env        {info['env_id'] or '-'}",
        f"size       {info['size_on_disk_bytes'] / 1e6:.1f} MB on disk",
        "keys",
    ]
    width = max((len(k) for k in info["keys"]), default=0)
    for key, meta in info["keys"].items():
        lines.append(f"  {key:<{width}}  {meta['dtype']:<8} {tuple(meta['shape'])}")
    conversion = info["attrs"].get("conversion")
    if isinstance(conversion, dict) and conversion.get("complete") is False:
        lines.append(
            f"conversion INCOMPLETE from {conversion.get('source')}: re-run `visuomotor dataset convert` "
            "with the same arguments to finish it"
        )
    lines.append(f"tasks      {len(info['tasks'])}")
    lines += [f"  {t!r}" for t in info["tasks"][:20]]
    if len(info["tasks"]) > 20:
        lines.append(f"  ... {len(info['tasks']) - 20} more")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from visuomotor.datasets import EpisodeStore

    if args.action == "info":
        store = EpisodeStore.open(args.path)
        if args.check:
            store.check_chunks()  # a missing chunk: one error line, before reading anything
            if _verify(store, None, quiet=True):
                return 1
        info = store.info()
        print(json.dumps(info, indent=2) if args.json else _format_info(info))
    elif args.action == "verify":
        return _verify(EpisodeStore.open(args.path), args.repair)
    elif args.action == "convert":
        return _convert(args)
    elif args.action == "stats":
        from visuomotor.datasets.stats import compute_stats

        store = EpisodeStore.open(args.path, mode="a")
        print(json.dumps(compute_stats(store, args.keys), indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from visuomotor.datasets import EpisodeStore
    from visuomotor.datasets.convert import convert, export

    if args.to == "lerobot":
        extra = [
            f for f, v in (("--rename", args.rename), ("--env-id", args.env_id), ("--fps", args.fps)) if v
        ]
        if extra:
            raise InvalidInputError(f"{', '.join(extra)} cannot be used with --to lerobot")
        out = export(args.src, args.dst, to="lerobot", repo_id=args.repo_id)
        store = EpisodeStore.open(args.src)
        print(f"wrote {out}: LeRobot dataset, {store.num_episodes} episodes, {store.num_frames} frames")
        return 0
    if args.repo_id:
        raise InvalidInputError("--repo-id names a LeRobot dataset: use it with --to lerobot")
    rename = {}
    for item in args.rename:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise InvalidInputError(f"--rename expects OLD=NEW, got {item!r}")
        rename[old] = new
    store = convert(args.src, args.dst, rename=rename, fps=args.fps, env_ids=args.env_id or None)
    print(f"wrote {store.path}: {store.num_episodes} episodes, {store.num_frames} frames")
    return 0


def _verify(store: Any, repair_out: str | None, quiet: bool = False) -> int:
    """Report every problem of `store` (one line each); 0 if none, else 1 (after writing the repaired
    copy when asked)."""
    import sys

    from visuomotor.datasets.verify import repair, verify_store

    problems = verify_store(store, progress=sys.stderr.isatty())
    if not problems:
        if not quiet:
            print(
                f"{store.path}: verified, {store.num_episodes} episodes, {store.num_frames} frames, no problems"
            )
        return 0
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{store.path}: {len(problems)} problem(s)", file=sys.stderr)
    if repair_out:
        done = repair(store, problems, repair_out)
        print(f"wrote {done['out']}: {done['kept']} episodes kept, dropped {done['dropped']}")
    return 1
