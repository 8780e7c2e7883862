"""Converters into our zarr v3 episode store, and out of it into a LeRobot dataset
(architecture.md §Interop).

Sources: Diffusion Policy ReplayBuffer stores (zarr v2: `data/<key>`, `meta/episode_ends`) and our own
v3 stores (a re-chunked copy; arrays bit for bit, keys unchanged unless renamed), LeRobot v3 datasets
(`interop/lerobot.py`) and robomimic hdf5 files (`interop/robomimic.py`). Every reader hands over a
`Source`; `interop/destination.py` writes it with the `conversion` marker that makes a killed conversion
visible and resumable. `export` goes the other way: a store into a LeRobot dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from visuomotor.datasets.interop.destination import unfinished_conversion, write_store
from visuomotor.datasets.interop.source import Episode, Source
from visuomotor.datasets.store import EpisodeStore, StoreError
from visuomotor.errors import InvalidInputError, MissingPathError, PathExistsError

log = logging.getLogger(__name__)

FORMATS = "Diffusion Policy zarr v2 stores, visuomotor zarr v3, LeRobot v3 datasets, robomimic hdf5"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def detect_format(path: Path) -> str:
    if not path.exists():
        raise MissingPathError(f"{path}: no such file or directory")
    if path.is_dir() and (path / ".zgroup").exists():
        return "zarr2"
    if path.is_dir() and (path / "zarr.json").exists():
        return "zarr3"
    if path.is_dir() and (path / "meta" / "info.json").exists():
        return "lerobot"
    if path.is_file():
        with path.open("rb") as f:
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return "robomimic"
    raise StoreError(f"{path}: unrecognised source format; supported: {FORMATS}")


def convert(
    src: str | Path,
    dst: str | Path,
    rename: Mapping[str, str] | None = None,
    fps: int | None = None,
    env_ids: list[str] | None = None,
) -> EpisodeStore:
    """Convert `src` into a new v3 store at `dst` (or finish an unfinished conversion of the same `src`
    there); returns the complete store."""
    src, dst = Path(src), Path(dst)
    fmt = detect_format(src)
    if os.path.lexists(dst) and unfinished_conversion(dst) is None:
        # Checked here too, before a source is opened (LeRobot takes seconds to import).
        raise PathExistsError(f"{dst} already exists; choose a new destination")
    with _open_source(src, fmt, dict(rename or {}), fps, list(env_ids or [])) as source:
        return write_store(dst, source)


def export(src: str | Path, dst: str | Path, to: str = "lerobot", repo_id: str | None = None) -> Path:
    """Write the store `src` as a new dataset of format `to` (only "lerobot" so far) at `dst`."""
    if to != "lerobot":
        raise InvalidInputError(f"cannot export to '{to}'; supported: lerobot")
    from visuomotor.datasets.interop.lerobot_export import export_lerobot

    return export_lerobot(src, dst, repo_id=repo_id)


def _open_source(
    src: Path, fmt: str, rename: dict[str, str], fps: int | None, env_ids: list[str]
) -> AbstractContextManager[Source]:
    if fmt in ("zarr2", "zarr3"):
        return _open_zarr(src, fmt, rename, fps, env_ids)
    if rename or env_ids:
        raise InvalidInputError(f"{src}: --rename and --env-id apply to zarr stores, not to a {fmt} source")
    if fmt == "lerobot":
        from visuomotor.datasets.interop.lerobot import open_lerobot

        return open_lerobot(src, fps)
    from visuomotor.datasets.interop.robomimic import open_robomimic

    return open_robomimic(src, fps)


@contextmanager
def _open_zarr(
    src: Path, fmt: str, rename: dict[str, str], fps: int | None, env_ids: list[str]
) -> Iterator[Source]:
    source = EpisodeStore.open(src, mode="r")
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

    def read(j: int) -> Episode:
        i = episodes[j]
        data = {rename.get(k, k): v for k, v in source.episode(i).items()}
        return Episode(data, task=source.task(i), meta=source.episode_meta(i))

    yield Source(
        path=src,
        format=fmt,
        num_episodes=len(episodes),
        fps=fps or round(source.fps),
        read=read,
        env_id=",".join(env_ids) if env_ids else source.env_id,
        action_space=source.attrs.get("action_space") or {},
        attrs=attrs,
        options={"rename": rename, "env_ids": env_ids},
    )
