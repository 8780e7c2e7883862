"""Converters into our zarr v3 episode store.

Supported sources: Diffusion Policy ReplayBuffer stores (zarr v2: `data/<key>`, `meta/episode_ends`) and
our own v3 stores (a re-chunked copy). Arrays are copied bit for bit, keys unchanged unless renamed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from visuomotor.datasets.store import EpisodeStore, StoreError
from visuomotor.errors import MissingPathError, PathExistsError

log = logging.getLogger(__name__)


def detect_format(path: Path) -> str:
    if not path.exists():
        raise MissingPathError(f"{path}: no such file or directory")
    if path.is_dir() and (path / ".zgroup").exists():
        return "zarr2"
    if path.is_dir() and (path / "zarr.json").exists():
        return "zarr3"
    raise StoreError(
        f"{path}: unrecognised source format; supported: Diffusion Policy zarr v2 stores, visuomotor zarr v3"
    )


def convert(
    src: str | Path,
    dst: str | Path,
    rename: Mapping[str, str] | None = None,
    fps: int | None = None,
    env_ids: list[str] | None = None,
):
    """Convert `src` into a new v3 store at `dst`; returns the new store."""
    src, dst = Path(src), Path(dst)
    fmt = detect_format(src)
    if dst.exists():
        raise PathExistsError(f"{dst} already exists; choose a new destination")
    source = EpisodeStore.open(src, mode="r")
    rename = dict(rename or {})
    unknown = sorted(set(rename) - set(source.keys))
    if unknown:
        raise StoreError(f"{src}: cannot rename {unknown}: not in the store (keys: {source.keys})")
    attrs = {k: v for k, v in source.attrs.items() if k not in ("format_version", "fps", "env_id", "tasks")}
    attrs["converted_from"] = {"path": str(src.resolve()), "format": fmt}
    episodes = list(range(source.num_episodes))
    if env_ids:
        # A subset by the env each episode was recorded in (episode meta "env_id", written by collect).
        have = {source.episode_meta(i).get("env_id") for i in episodes}
        missing = sorted(set(env_ids) - have)
        if missing:
            raise StoreError(
                f"{src}: no episodes of {missing}; its episodes come from {sorted(map(str, have))}"
            )
        episodes = [i for i in episodes if source.episode_meta(i).get("env_id") in env_ids]
    out = EpisodeStore.create(
        dst,
        fps=fps or round(source.fps),
        env_id=",".join(env_ids) if env_ids else source.env_id,
        action_space=source.attrs.get("action_space") or {},
        attrs=attrs,
    )
    try:
        for i in episodes:
            episode = source.episode(i)
            out.append_episode(
                {rename.get(k, k): v for k, v in episode.items()},
                task=source.task(i),
                meta=source.episode_meta(i),
            )
    except BaseException:
        import shutil

        shutil.rmtree(dst, ignore_errors=True)
        raise
    log.info("converted %s (%s, %d episodes) -> %s", src, fmt, out.num_episodes, dst)
    return out
