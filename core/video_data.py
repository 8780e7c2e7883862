"""Action-free video for co-training (architecture.md §PAD): a second store whose episodes train only a
policy's frame prediction, mixed into every batch at `TrainConfig.video_fraction`, as PAD co-trains on
BridgeData videos (its code: 30% of samples, action and depth losses masked).

A video window carries the policy's cameras (same frame size) and, where the video store has them, its
state keys (else zeros); its actions are zeros and `action_mask` is 0, so the policy skips their action
loss. Its tasks join the run's task vocabulary, so a video of another task is conditioned on that task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError


@dataclass
class VideoWindows:
    sampler: Any
    task_map: np.ndarray
    """Video store task index -> the run's task index."""
    state_keys: tuple[str, ...]
    """The policy's state keys the video store lacks (zeros in its windows)."""


def open_video(config: Any, path: str, resume: bool) -> VideoWindows:
    """The windows of the video store at `path` for a policy `config` (adapted to its robot store)."""
    from visuomotor.datasets import EpisodeStore, SequenceSampler

    if not getattr(type(config), "LEARNS_FROM_VIDEO", False):
        raise InvalidInputError(
            f"--video-data: a {type(config).__name__} has nothing to learn from action-free video (PAD does)"
        )
    store = EpisodeStore.open(Path(path))
    for key in config.image_keys:
        if key not in store.keys:
            raise InvalidInputError(f"--video-data {path}: no camera '{key}' (it has {sorted(store.keys)})")
        if list(store.shape(key)) != list(config.input_shapes[key]):
            raise InvalidInputError(
                f"--video-data {path}: '{key}' frames are {list(store.shape(key))}, the robot store's "
                f"{list(config.input_shapes[key])}"
            )
    new_tasks = [t for t in store.tasks if t not in config.tasks]
    if new_tasks and resume:
        raise InvalidInputError(
            f"--video-data {path}: tasks {new_tasks} are not in the resumed run's vocabulary"
        )
    if new_tasks:
        config.tasks = [*config.tasks, *new_tasks] if config.tasks else sorted({*store.tasks})
    missing = tuple(k for k in config.state_keys if k not in store.keys)
    keys = tuple(k for k in config.input_keys if k not in missing)
    sampler = SequenceSampler(store, replace(config.window_spec(keys), action_key=None))
    if len(sampler) == 0:
        raise InvalidInputError(
            f"--video-data {path}: no windows (episodes too short for the future frames?)"
        )
    index = {t: i for i, t in enumerate(config.tasks)}
    task_map = np.array([index.get(t, 0) for t in sampler.tasks], np.int64)
    return VideoWindows(sampler, task_map, missing)


def mix_video(
    batch: dict[str, np.ndarray], video: dict[str, np.ndarray], windows: VideoWindows
) -> dict[str, np.ndarray]:
    """`batch` (robot windows) followed by `video` windows, with `action_mask` 1 then 0; the keys of the
    robot batch only (zeros where the video has none)."""
    n_robot, n_video = len(batch["action"]), len(video["task_index"])
    out = {}
    for key, value in batch.items():
        if key == "task_index":
            extra = windows.task_map[video["task_index"]]
        elif key in video:
            extra = video[key]
        else:  # actions, and state keys the video store lacks
            extra = np.zeros((n_video, *value.shape[1:]), value.dtype)
        out[key] = np.concatenate([value, extra.astype(value.dtype)])
    out["action_mask"] = np.concatenate([np.ones(n_robot, np.float32), np.zeros(n_video, np.float32)])
    return out
