"""LeRobot datasets (v3.0: parquet + mp4) -> Source, for `visuomotor dataset convert LEROBOT_DIR STORE`
(architecture.md §Interop).

The dataset is read through LeRobot's own classes: `LeRobotDataset(root=..., video_backend="pyav")` for
its metadata and frames (the parquet files, memory-mapped by Hugging Face `datasets`) and LeRobot's video
decoder for each episode's stretch of a camera's mp4, so memory holds one episode at a time.

Keys keep LeRobot's names (architecture.md §Conventions): `observation.state`, `action`, every other
numeric feature as it is, cameras as `observation.images.<camera>` (uint8 (H, W, 3); a camera named
outside that prefix, like PushT's `observation.image`, becomes `observation.images.image`, recorded in
attrs["lerobot"]["renamed"]). A feature of shape (1,) becomes (T, 1). Tasks stay per episode (the task of
its first frame; an episode with several keeps them all in its meta "tasks"); fps, robot type, each
feature's `names` (attrs["feature_names"]) and the cameras (attrs["cameras"]) are kept. LeRobot's
bookkeeping columns (timestamp, frame_index, episode_index, index, task_index) are implied by the store.

Before LeRobot is imported, `meta/info.json` is checked: a feature the store cannot hold (text other than
the task, a depth map, anything not numeric or RGB) is refused, naming the file and the feature. Every
episode's parquet and video files must exist: LeRobot would otherwise try to download them.

A dataset written by `lerobot_export.py` carries `meta/visuomotor.json` (SIDECAR): the store's attributes,
episode metadata and frame shapes, so store -> LeRobot -> store gives back the same store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.datasets.interop.source import Episode, Source
from visuomotor.datasets.store import FLOAT32_KEYS
from visuomotor.errors import InvalidInputError, MissingPathError
from visuomotor.keys import ACTION, IMAGE_PREFIX, camera_of, image_key

log = logging.getLogger(__name__)

INFO = "meta/info.json"
SIDECAR = "meta/visuomotor.json"
# LeRobot's DEFAULT_FEATURES: per-frame bookkeeping the store expresses by episode_ends and fps.
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")


@dataclass
class Plan:
    """Where each LeRobot feature goes in the store."""

    arrays: dict[str, str] = field(default_factory=dict)  # numeric feature -> store key
    videos: dict[str, str] = field(default_factory=dict)  # mp4 camera -> store image key
    images: dict[str, str] = field(default_factory=dict)  # PNG-in-parquet camera -> store image key
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # store key -> frame shape

    @property
    def cameras(self) -> dict[str, str]:
        return {**self.videos, **self.images}


def read_info(path: Path) -> dict[str, Any]:
    """`meta/info.json` of the dataset at `path`, checked for a version this reader knows."""
    info_path = path / INFO
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise MissingPathError(f"{info_path}: no such file; not a LeRobot dataset") from None
    except ValueError as exc:
        raise InvalidInputError(f"{info_path}: not valid JSON: {exc}") from exc
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise InvalidInputError(
            f"{info_path}: codebase_version '{version}'; this reader takes LeRobot v3 datasets (convert "
            "v2.1 ones with `python -m lerobot.scripts.convert_dataset_v21_to_v30` first)"
        )
    if not isinstance(info.get("features"), dict) or not info.get("total_episodes"):
        raise InvalidInputError(f"{info_path}: no features or no episodes")
    return info


def plan_features(path: Path, info: dict[str, Any]) -> Plan:
    """Map every feature of `info` to a store key; refuse the ones the store cannot hold."""
    plan = Plan()
    where = path / INFO
    for name, ft in info["features"].items():
        dtype, shape = str(ft.get("dtype")), tuple(int(d) for d in ft.get("shape") or ())
        if name in BOOKKEEPING:
            continue
        if dtype in ("video", "image"):
            key = _camera_key(name)
            _check_camera(where, name, ft, shape)
            (plan.videos if dtype == "video" else plan.images)[name] = key
            plan.shapes[key] = _hwc(shape, ft.get("names"))
        elif _numeric(dtype) and not name.startswith(IMAGE_PREFIX):
            if name in FLOAT32_KEYS and np.dtype(dtype).kind != "f":
                raise InvalidInputError(f"{where}: feature '{name}' is {dtype}; the store needs it float")
            plan.arrays[name] = name
            plan.shapes[name] = shape
        else:
            raise InvalidInputError(
                f"{where}: feature '{name}' (dtype '{dtype}', shape {list(shape)}) cannot be held by the "
                "episode store: it holds numeric arrays and RGB cameras, and the task text per episode"
            )
    keys = [*plan.arrays.values(), *plan.cameras.values()]
    clashes = sorted({k for k in keys if keys.count(k) > 1})
    if clashes:
        raise InvalidInputError(f"{where}: features map onto the same store keys {clashes}")
    return plan


def _numeric(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:
        return False


def _camera_key(name: str) -> str:
    if name.startswith(IMAGE_PREFIX):
        return name
    return image_key(name.removeprefix("observation.").replace(".", "_"))


def _check_camera(where: Path, name: str, ft: dict[str, Any], shape: tuple[int, ...]) -> None:
    info = ft.get("info") or {}
    if info.get("is_depth_map") or info.get("video.is_depth_map"):
        raise InvalidInputError(f"{where}: feature '{name}' is a depth map; the store holds RGB cameras")
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise InvalidInputError(f"{where}: camera '{name}' has shape {list(shape)}; expected RGB (H, W, 3)")


def _hwc(shape: tuple[int, ...], names: Any) -> tuple[int, ...]:
    """(H, W, 3) of a camera feature, whose shape LeRobot lists in the order of its `names`."""
    if isinstance(names, list) and len(names) == 3 and names[0] in ("channel", "channels"):
        return (shape[1], shape[2], shape[0])
    return shape if shape[-1] == 3 else (shape[1], shape[2], shape[0])


@contextmanager
def open_lerobot(path: Path, fps: int | None = None) -> Iterator[Source]:
    """The LeRobot dataset at `path` as a Source (`fps` overrides the dataset's)."""
    info = read_info(path)
    plan = plan_features(path, info)
    sidecar = _read_sidecar(path)
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    repo_id = f"local/{path.name}"  # only names the dataset: with `root` given, nothing is downloaded
    _check_files(path, ("meta/tasks.parquet",), ("meta/episodes", "data"))
    meta = LeRobotDatasetMetadata(repo_id, root=path)
    _check_episode_files(path, meta, plan)
    dataset = LeRobotDataset(repo_id, root=path, video_backend="pyav")
    reader = _Reader(path, dataset, plan, sidecar)
    yield Source(
        path=path,
        format="lerobot",
        num_episodes=meta.total_episodes,
        fps=fps or int(meta.fps),
        read=reader.episode,
        env_id=str(sidecar.get("env_id", "")),
        action_space=sidecar.get("action_space") or _action_space(info),
        attrs=_attrs(path, info, plan, sidecar),
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    file = path / SIDECAR
    if not file.exists():
        return {}
    try:
        sidecar = json.loads(file.read_text())
    except ValueError as exc:
        raise InvalidInputError(f"{file}: not valid JSON: {exc}") from exc
    if not isinstance(sidecar, dict):
        raise InvalidInputError(f"{file}: expected a JSON object")
    return sidecar


def _check_files(path: Path, files: tuple[str, ...], folders: tuple[str, ...]) -> None:
    for rel in files:
        if not (path / rel).is_file():
            raise MissingPathError(f"{path / rel}: no such file (a LeRobot v3 dataset has one)")
    for rel in folders:
        if not any((path / rel).glob("*/*.parquet")):
            raise MissingPathError(f"{path / rel}: no parquet files (a LeRobot v3 dataset has them)")


def _check_episode_files(path: Path, meta: Any, plan: Plan) -> None:
    """Every episode's data and video files exist (files are shared by many episodes: each once)."""
    seen: set[Path] = set()
    for i in range(meta.total_episodes):
        wanted = [("data", meta.get_data_file_path(i))]
        wanted += [(f"camera '{k}'", meta.get_video_file_path(i, k)) for k in plan.videos]
        for what, rel in wanted:
            if rel in seen:
                continue
            if not (path / rel).is_file():
                raise MissingPathError(f"{path / rel}: no such file ({what} of episode {i})")
            seen.add(rel)


def _action_space(info: dict[str, Any]) -> dict[str, Any]:
    ft = info["features"].get(ACTION)
    if not ft:
        return {}
    space: dict[str, Any] = {"shape": list(ft.get("shape") or [])}
    if isinstance(ft.get("names"), list):
        space["names"] = ft["names"]
    return space


def _attrs(path: Path, info: dict[str, Any], plan: Plan, sidecar: dict[str, Any]) -> dict[str, Any]:
    renamed = {name: key for name, key in plan.cameras.items() if name != key}
    # Per-dimension names of the arrays (motor names...); a camera's are only its axes' names.
    names = {
        plan.arrays[k]: ft["names"]
        for k, ft in info["features"].items()
        if ft.get("names") and k in plan.arrays
    }
    sizes = {plan.shapes[key][:2] for key in plan.cameras.values()}
    attrs: dict[str, Any] = {
        "lerobot": {
            "codebase_version": info.get("codebase_version"),
            "robot_type": info.get("robot_type"),
            "renamed": renamed,
        },
        "cameras": [camera_of(key) for key in plan.cameras.values()],
        "feature_names": names,
    }
    if info.get("robot_type"):
        attrs["robot"] = info["robot_type"]
    if len(sizes) == 1 and len(set(next(iter(sizes)))) == 1:  # square frames of one size
        attrs["image_size"] = int(next(iter(sizes))[0])
    # What the exported store said about itself wins over what we infer; the provenance is this run's.
    attrs.update(sidecar.get("attrs") or {})
    attrs["converted_from"] = {"path": str(path.resolve()), "format": "lerobot"}
    return attrs


class _Reader:
    """Reads one episode at a time from an open LeRobotDataset."""

    def __init__(self, path: Path, dataset: Any, plan: Plan, sidecar: dict[str, Any]) -> None:
        self.path, self.dataset, self.plan = path, dataset, plan
        self.meta = dataset.meta
        # Plain numpy columns instead of LeRobot's torch transform, and dtype=None: the numpy formatter
        # otherwise casts floats to float32 and integers to int64. The arrays come out exactly as stored.
        self.rows = dataset.hf_dataset.with_format("numpy", dtype=None)
        self.task_of = {int(row.task_index): str(task) for task, row in self.meta.tasks.iterrows()}
        self.sidecar_shapes = sidecar.get("frame_shapes") or {}
        self.sidecar_episodes = sidecar.get("episodes") or []
        if sidecar and len(self.sidecar_episodes) != self.meta.total_episodes:
            # Episodes were added or removed since our export: its per-episode record no longer lines up.
            log.warning(
                "%s: %s lists %d episodes, the dataset has %d; ignoring its episode metadata",
                path,
                SIDECAR,
                len(self.sidecar_episodes),
                self.meta.total_episodes,
            )
            self.sidecar_episodes = []

    def episode(self, i: int) -> Episode:
        ep = self.meta.episodes[i]
        start, stop = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
        rows = self.rows[start:stop]
        if int(ep["episode_index"]) != i or not np.array_equal(rows["index"], np.arange(start, stop)):
            raise InvalidInputError(
                f"{self.path}: episode {i}: its row in meta/episodes and rows {start}..{stop - 1} of data/ do "
                "not line up (columns 'episode_index', 'index')"
            )
        n = stop - start
        data = {key: self._shaped(key, np.asarray(rows[name]), n) for name, key in self.plan.arrays.items()}
        for name, key in self.plan.images.items():
            data[key] = self._checked(i, name, key, np.asarray(rows[name], dtype=np.uint8))
        for name, key in self.plan.videos.items():
            data[key] = self._checked(i, name, key, self._decode(i, ep, name, rows["timestamp"]))
        tasks = list(dict.fromkeys(self.task_of[int(t)] for t in rows["task_index"]))
        meta = {"lerobot_episode_index": int(ep["episode_index"])}
        if i < len(self.sidecar_episodes) and isinstance(self.sidecar_episodes[i], dict):
            meta = self.sidecar_episodes[i]
        if len(tasks) > 1:
            meta = {**meta, "tasks": tasks}
        return Episode(data, task=tasks[0], meta=meta)

    def _shaped(self, key: str, value: np.ndarray, n: int) -> np.ndarray:
        # LeRobot stores a (1,) feature as a scalar column; the exporter's sidecar knows the store's shape.
        shape = self.sidecar_shapes.get(key, self.plan.shapes[key])
        return value.reshape(n, *shape)

    def _checked(self, i: int, name: str, key: str, frames: np.ndarray) -> np.ndarray:
        if frames.shape[1:] != self.plan.shapes[key]:
            raise InvalidInputError(
                f"{self.path}: episode {i}: camera '{name}' gives frames {frames.shape[1:]}, but "
                f"{INFO} says {self.plan.shapes[key]}"
            )
        return frames

    def _decode(self, i: int, ep: dict[str, Any], name: str, timestamps: np.ndarray) -> np.ndarray:
        """The episode's frames of one camera, uint8 (T, H, W, 3), by LeRobot's PyAV decoder."""
        import av
        from lerobot.datasets.video_utils import decode_video_frames

        file = self.path / self.meta.get_video_file_path(i, name)
        shift = float(ep[f"videos/{name}/from_timestamp"])  # the episode's start in a shared mp4
        query = [shift + float(t) for t in timestamps]
        try:
            frames = decode_video_frames(file, query, self.dataset.tolerance_s, "pyav", return_uint8=True)
        except (ValueError, OSError, av.FFmpegError) as exc:
            raise InvalidInputError(f"{file}: episode {i}, camera '{name}': cannot decode: {exc}") from exc
        return np.ascontiguousarray(frames.numpy().transpose(0, 2, 3, 1))  # (T, C, H, W) -> (T, H, W, C)
