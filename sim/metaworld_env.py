"""Metaworld v3 single-task envs as gymnasium envs with the standard keys (architecture.md §Conventions).

One Metaworld env class per task, built the way Metaworld's goal-observable envs are
(metaworld/env_dict.py `_create_observable_goal_envs`): the goal is part of the 39-d observation, as in the
MT10/MT50 benchmarks, and Metaworld's scripted policies read it from there. Unlike those envs, the task
(object and goal positions) is not frozen: it is drawn from the env's seeded generator at every reset
(Metaworld's own `seeded_rand_vec` switch), so seeds 0..N-1 give N different, reproducible tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from visuomotor.sim.base import SimEnv
from visuomotor.sim.registry import CORNER2_POSES, EnvSpec

# Metaworld's corner cameras are mounted upside down (their images need both axes flipped; LeRobot does the
# same). topview, behindGripper and gripperPOV come out upright.
_UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})

# Where things sit in the 39-d `observation.environment_state` (Metaworld's sawyer_xyz_env.py `_get_obs`):
# hand xyz, gripper opening, object 1 xyz + quaternion, object 2 xyz + quaternion (zeros when a task has
# one object), the same 18 values of the previous step, goal xyz.
STATE_LAYOUT: dict[str, int] = {
    "hand": 0,
    "gripper": 3,
    "obj1": 4,
    "obj1_quat": 7,
    "obj2": 11,
    "obj2_quat": 14,
    "previous": 18,
    "goal": 36,
}

# Policy config overrides that show the policy positions only relative to each other (goal - hand,
# object - hand, goal - object), plus the gripper and the object orientations. With 10 demonstrations per
# task a policy that also sees absolute positions fits the demonstrations' goals and misses new ones
# (reach-v3, BENCHMARKS.md: 46% -> 78%). No differences with object 2: its slots are zeros in tasks with
# one object (all of MT10), where object 2 - hand would be minus the absolute hand position.
_L = STATE_LAYOUT
RELATIVE_STATE: dict[str, tuple] = {
    "state_dims": (
        _L["gripper"],
        *range(_L["obj1_quat"], _L["obj1_quat"] + 4),
        *range(_L["obj2_quat"], _L["obj2_quat"] + 4),
    ),
    "state_differences": (
        (_L["goal"], _L["hand"], 3),
        (_L["obj1"], _L["hand"], 3),
        (_L["goal"], _L["obj1"], 3),
    ),
}


def _metaworld_env_class(task_name: str) -> type:
    # Imported here so `import visuomotor.sim` stays light (metaworld takes ~2.5 s to import) and so
    # visuomotor.sim.rendering has set the MUJOCO_GL default before metaworld imports mujoco.
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return ALL_V3_ENVIRONMENTS[task_name]


class MetaworldEnv(SimEnv):
    """One Metaworld v3 task. Build it with `visuomotor.sim.make_env`."""

    _upside_down_cameras = _UPSIDE_DOWN_CAMERAS

    def __init__(
        self,
        spec: EnvSpec,
        cameras: Sequence[str],
        image_size: int,
        render: bool,
        seed: int | None,
        max_episode_steps: int,
        terminate_on_success: bool,
        camera_pose: str,
    ) -> None:
        super().__init__(spec, cameras, image_size, render, seed, max_episode_steps, terminate_on_success)
        raw = _metaworld_env_class(spec.task_name)()
        # The switches Metaworld's benchmark wrappers set (env_dict.py `initialize`, `set_task`):
        # Goal in the observation, as in the MT benchmarks; the scripted policies read it from there.
        raw._partially_observable = False
        del raw.sawyer_observation_space  # a cached_property that depends on the switch above
        raw._set_task_called = True
        raw._freeze_rand_vec = False  # a new task (object/goal positions) at every reset ...
        raw.seeded_rand_vec = True  # ... drawn from raw.np_random, which reset() seeds
        # Metaworld raises if stepped past max_path_length; make its limit ours.
        raw.max_path_length = max_episode_steps
        self._raw = raw

        # Posed before the cameras are described, so camera_info records the pose images are taken from.
        if "corner2" in self.camera_names:
            raw.model.cam_pos[raw.model.camera("corner2").id] = CORNER2_POSES[camera_pose]
        self.camera_pose = camera_pose
        # Metaworld clips its observation to these bounds (sawyer_xyz_env.py step()).
        low = raw.sawyer_observation_space.low.astype(np.float32)
        high = raw.sawyer_observation_space.high.astype(np.float32)
        self._init_cameras_and_spaces(
            state_space=gym.spaces.Box(low[:4], high[:4], dtype=np.float32),
            env_state_space=gym.spaces.Box(low, high, dtype=np.float32),
        )

    @property
    def _model(self) -> Any:
        return self._raw.model

    @property
    def _data(self) -> Any:
        return self._raw.data

    def _reset_raw(self, episode_seed: int) -> np.ndarray:
        self._raw.seed(episode_seed)
        raw_obs, _ = self._raw.reset()
        return raw_obs

    def _step_raw(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)
        raw_obs, reward, _, _, raw_info = self._raw.step(action)
        return raw_obs, reward, bool(raw_info.get("success", 0.0)), raw_info

    def _state_observation(self, raw_obs: np.ndarray) -> dict[str, np.ndarray]:
        raw_obs = np.asarray(raw_obs, dtype=np.float32)
        return {
            # Metaworld's obs[:4] is the hand (end-effector) position and the normalised gripper opening.
            "observation.state": raw_obs[:4].copy(),
            "observation.environment_state": raw_obs,
        }

    def _describe_camera(self, name: str) -> dict[str, Any]:
        info = super()._describe_camera(name)
        if name == "corner2":
            info["pose_preset"] = self.camera_pose
        return info
