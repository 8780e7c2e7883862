"""Episode store -> LeRobot dataset (v3.0), for `visuomotor dataset convert STORE DIR --to lerobot`
(architecture.md §Interop).

Written through LeRobot's own writer (`LeRobotDataset.create`, `add_frame`, `save_episode`, `finalize`),
one episode in memory at a time. Keys keep their names (the store already uses LeRobot's); cameras
(`observation.images.<camera>`, uint8 (H, W, 3)) become videos; every other array becomes a numeric
feature, a per-frame scalar one of shape (1,). Feature `names` come from attrs["feature_names"] (and the
action space's names). Low-dim arrays go to parquet unchanged, so they come back bit-identical; camera
frames come back within the video codec's error.

Video codec: LeRobot's default (SVT-AV1), except for cameras under 64 pixels a side, which get H.264:
SVT-AV1 kills the whole process (SIGFPE) on frames that small (seen at 24x24 with SVT-AV1 3.0), and
H.264 needs even sides.

The dataset is built under a hidden sibling name and renamed into place when finalized
(destination.building_directory): a killed export leaves no destination, and the next run starts over.
`meta/visuomotor.json` (lerobot.SIDECAR) keeps what LeRobot's format has no place for: the store's
attributes, episode metadata and frame shapes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.datasets.interop.destination import building_directory, progress
from visuomotor.datasets.interop.lerobot import BOOKKEEPING, SIDECAR
from visuomotor.datasets.store import EpisodeStore, is_image_key
from visuomotor.errors import InvalidInputError, PathExistsError
from visuomotor.keys import ACTION

log = logging.getLogger(__name__)

SMALL_FRAME = 64  # below this many pixels a side, H.264 instead of SVT-AV1 (see the module docstring)
# Store attributes that LeRobot's own metadata carries, or that describe the store file rather than the data.
_NOT_IN_SIDECAR = ("format_version", "fps", "env_id", "action_space", "tasks", "stats", "stats_frames")


def export_lerobot(src: str | Path, dst: str | Path, repo_id: str | None = None) -> Path:
    """Write the store at `src` as a new LeRobot dataset at `dst`; returns `dst`."""
    src, dst = Path(src), Path(dst)
    if os.path.lexists(dst):
        raise PathExistsError(f"{dst} already exists; choose a new destination")
    store = EpisodeStore.open(src, mode="r")
    if store.num_episodes == 0:
        raise InvalidInputError(f"{src}: the store has no episodes to export")
    features = lerobot_features(store)
    vcodec = video_codec(store)
    from lerobot.configs import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    with building_directory(dst) as tmp:
        dataset = LeRobotDataset.create(
            repo_id or f"local/{dst.name}",
            fps=round(store.fps),
            features=features,
            root=tmp,
            robot_type=store.attrs.get("robot") or None,
            use_videos=True,
            rgb_encoder=RGBEncoderConfig(vcodec=vcodec),
            video_backend="pyav",  # also keeps LeRobot from probing torchcodec, which may not load
        )
        try:
            for i in progress(range(store.num_episodes), store.num_episodes, 0, src.name):
                _write_episode(dataset, store, i, features)
        except BaseException:
            with contextlib.suppress(Exception):
                dataset.finalize()  # close LeRobot's parquet writers before their directory is removed
            raise
        dataset.finalize()  # writes the parquet footers: without it the dataset does not open
        (tmp / SIDECAR).write_text(json.dumps(sidecar(store), indent=1))
    log.info("exported %s (%d episodes) -> LeRobot dataset %s (%s)", src, store.num_episodes, dst, vcodec)
    return dst


def lerobot_features(store: EpisodeStore) -> dict[str, dict[str, Any]]:
    """LeRobot's feature spec for the store's arrays; refuses arrays LeRobot cannot take."""
    names = dict(store.attrs.get("feature_names") or {})
    action_names = (store.attrs.get("action_space") or {}).get("names")
    if action_names and ACTION not in names:
        names[ACTION] = action_names
    features = {}
    for key in store.keys:
        shape, dtype = store.shape(key), store.dtype(key)
        where = f"{store.path}: array 'data/{key}'"
        if key in BOOKKEEPING or key == "task":
            raise InvalidInputError(f"{where}: LeRobot reserves the name '{key}'; rename it first")
        if is_image_key(key):
            if len(shape) != 3 or shape[2] != 3:
                raise InvalidInputError(f"{where} has frames {shape}; LeRobot videos are RGB (H, W, 3)")
            features[key] = {"dtype": "video", "shape": shape, "names": ["height", "width", "channels"]}
        elif dtype.kind in "biuf" and not (dtype == np.uint8 and len(shape) == 3):
            frame = shape or (1,)
            given = names.get(key)
            ok = isinstance(given, list) and len(given) == math.prod(frame) and len(frame) == 1
            features[key] = {"dtype": str(dtype), "shape": frame, "names": given if ok else None}
        else:
            raise InvalidInputError(
                f"{where} ({dtype} {shape}) has no LeRobot feature type; image arrays must be named "
                "observation.images.<camera> (`visuomotor dataset convert --rename OLD=NEW` renames)"
            )
    return features


def video_codec(store: EpisodeStore) -> str:
    """LeRobot's default codec, or H.264 for small frames (see the module docstring)."""
    sizes = [store.shape(k)[:2] for k in store.keys if is_image_key(k)]
    if not sizes or min(min(s) for s in sizes) >= SMALL_FRAME:
        return "libsvtav1"
    odd = [s for s in sizes if s[0] % 2 or s[1] % 2]
    if odd:
        raise InvalidInputError(
            f"{store.path}: camera frames {odd[0]} are under {SMALL_FRAME} px with an odd side; the H.264 "
            "video used for frames that small needs even height and width"
        )
    log.info(
        "%s: camera frames under %d px: encoding H.264 (SVT-AV1 crashes on them)", store.path, SMALL_FRAME
    )
    return "h264"


def _write_episode(dataset: Any, store: EpisodeStore, i: int, features: dict[str, dict[str, Any]]) -> None:
    episode = store.episode(i)
    task = store.task(i)
    for t in range(int(store.episode_lengths[i])):
        frame: dict[str, Any] = {key: episode[key][t].reshape(features[key]["shape"]) for key in features}
        frame["task"] = task
        dataset.add_frame(frame)
    dataset.save_episode(parallel_encoding=False)  # no process pool: one camera after another


def sidecar(store: EpisodeStore) -> dict[str, Any]:
    """What the LeRobot dataset cannot say about the store: read back by lerobot.open_lerobot."""
    attrs = store.attrs
    return {
        "written_by": "visuomotor dataset convert --to lerobot",
        "env_id": store.env_id,
        "action_space": attrs.get("action_space") or {},
        "attrs": {k: v for k, v in attrs.items() if k not in (*_NOT_IN_SIDECAR, "conversion")},
        "episodes": [store.episode_meta(i) for i in range(store.num_episodes)],
        "frame_shapes": {k: list(store.shape(k)) for k in store.keys if not is_image_key(k)},
    }
