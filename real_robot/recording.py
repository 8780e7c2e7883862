"""Episodes a robot ran (deployed or teleoperated) into the episode store (architecture.md §Robots).

Each episode is appended whole when it ends, so a crash or kill while recording loses at most the
episode in progress. The store's attributes say what the robot was (its name, action names and
semantics, limits, cameras), so a policy trained on it is matched against the same robot at deploy time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.keys import camera_of
from visuomotor.real_robot.robot import Robot
from visuomotor.real_robot.runtime import EpisodeLog
from visuomotor.real_robot.safety import SafetyLimits


def store_attributes(robot: Robot, limits: SafetyLimits, frame: dict[str, np.ndarray]) -> dict[str, Any]:
    """The new store's action space and attributes for episodes of `robot` with observations like `frame`."""
    from visuomotor.keys import IMAGE_PREFIX

    cameras = [camera_of(k) for k in frame if k.startswith(IMAGE_PREFIX)]
    sizes = {frame[k].shape[:2] for k in frame if k.startswith(IMAGE_PREFIX)}
    attrs: dict[str, Any] = {
        "robot": robot.name,
        "cameras": cameras,
        "action_semantics": robot.action_semantics,
    }
    if len(sizes) == 1 and len({*next(iter(sizes))}) == 1:  # square frames of one size
        attrs["image_size"] = int(next(iter(sizes))[0])
    action_space = {
        "shape": [len(limits.names)],
        "names": list(limits.names),
        "low": limits.low.tolist(),
        "high": limits.high.tolist(),
        "semantics": robot.action_semantics,
    }
    return {"action_space": action_space, "attrs": attrs}


def append_episode(
    path: str | Path, robot: Robot, log: EpisodeLog, limits: SafetyLimits, task: str, fps: float,
    meta: dict[str, Any],
) -> bool:  # fmt: skip
    """Append the episode (the store is created on first use); False when it has no ticks."""
    from visuomotor.datasets import EpisodeStore

    if not log.actions:
        return False
    if Path(path).exists():
        store = EpisodeStore.open(path, mode="a")
    else:
        facts = store_attributes(robot, limits, log.frames[0])
        env_id = getattr(robot, "env_id", robot.name)
        store = EpisodeStore.create(
            path,
            fps=max(1, round(fps)),
            env_id=env_id,
            action_space=facts["action_space"],
            attrs=facts["attrs"],
        )
    data = {k: np.stack([f[k] for f in log.frames]) for k in log.frames[0]}
    data["action"] = np.stack(log.actions)
    data["deploy.timestamp"] = np.asarray(log.timestamps, np.float32)
    data["deploy.safety"] = np.asarray(log.safety, np.int32)
    store.append_episode(data, task=task, meta=meta)
    return True
