"""The quickstart, end to end on a small default: collect scripted demonstrations into an episode store,
inspect it, compute its normalisation statistics, then evaluate the scripted expert in simulation,
printing the success rate and writing videos. Each step is the same `visuomotor` command a user would
type; they are printed as they run. Training and evaluating a learned policy join this once the policy
engine lands (issue 4).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="metaworld/reach-v3", help="environment id")
    parser.add_argument("--episodes", type=int, default=4, help="demonstrations to collect")
    parser.add_argument("--eval-episodes", type=int, default=4, help="evaluation episodes")
    parser.add_argument("--out", default=None, help="output directory (default: a new runs/demo-N)")


def _new_run_dir(parent: Path, stem: str) -> Path:
    """The first of parent/stem-1, stem-2, ... that does not exist: earlier runs are never overwritten."""
    n = 1
    while (parent / f"{stem}-{n}").exists():
        n += 1
    return parent / f"{stem}-{n}"


def run(args: argparse.Namespace) -> int:
    from visuomotor.cli import main

    out = Path(args.out) if args.out else _new_run_dir(Path("runs"), "demo")
    store = out / "demo.zarr"
    if store.exists():
        raise FileExistsError(f"{store} exists from an earlier run; pass --out NEW_DIR or remove it")
    steps = [
        [
            "collect",
            "--env",
            args.env,
            "--episodes",
            str(args.episodes),
            "--out",
            str(store),
            "--image-size",
            "64",
        ],
        ["dataset", "info", str(store)],
        ["dataset", "stats", str(store)],
        [
            "eval",
            "--policy",
            "scripted",
            "--env",
            args.env,
            "--episodes",
            str(args.eval_episodes),
            "--json",
            str(out / "eval.json"),
            "--video",
            str(out / "videos"),
        ],
    ]
    for step in steps:
        print(f"\n$ visuomotor {shlex.join(step)}", flush=True)
        code = main(step)
        if code:
            return code
    print(f"\ndemo done: store {store}, evaluation {out / 'eval.json'}, videos in {out / 'videos'}")
    return 0
