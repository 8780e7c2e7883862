"""Metaworld v3 single-task envs as gymnasium envs with the DESIGN §3 observation keys.

One Metaworld env class per task, built the way Metaworld's goal-observable envs are
(metaworld/env_dict.py `_create_observable_goal_envs`): the goal is part of the 39-d observation, as in the
MT10/MT50 benchmarks, and Metaworld's scripted policies read it from there. Unlike those envs, the task
(object and goal positions) is not frozen: it is drawn from the env's seeded generator at every reset
(Metaworld's own `seeded_rand_vec` switch), so seeds 0..N-1 give N different, reproducible tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from visuomotor.sim.registry import EnvSpec
from visuomotor.sim.rendering import OffscreenRenderer

log = logging.getLogger(__name__)

# Poses of the `corner2` camera (position only; the orientation stays Metaworld's euler (3.9, 2.3, 0.6)).
# Metaworld's own pose is far from the table, so a 64 px image shows it small; LeRobot moves the camera to
# (0.75, 0.075, 0.7) (lerobot/envs/metaworld.py), DP3 to (0.6, 0.295, 0.8). See DESIGN §6 and
# shared/img/metaworld_corner2_64px.png. Default: LeRobot's, the table fills the frame with the whole arm in
# view, and datasets converted from LeRobot's Metaworld data see the same view as ours.
CORNER2_POSES: dict[str, tuple[float, float, float]] = {
    "lerobot": (0.75, 0.075, 0.7),
    "dp3": (0.6, 0.295, 0.8),
    "metaworld": (1.3, -0.2, 1.1),
}
DEFAULT_CORNER2_POSE = "lerobot"

# Metaworld's corner cameras are mounted upside down (their images need both axes flipped; LeRobot does the
# same). topview, behindGripper and gripperPOV come out upright.
_UPSIDE_DOWN_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})


def _metaworld_env_class(task_name: str) -> type:
    # Imported here so `import visuomotor.sim` stays light (metaworld takes ~2.5 s to import) and so
    # visuomotor.sim.rendering has set the MUJOCO_GL default before metaworld imports mujoco.
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return ALL_V3_ENVIRONMENTS[task_name]


class MetaworldEnv(gym.Env):
    """One Metaworld v3 task. Build it with `visuomotor.sim.make_env`."""

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium's convention: a class attribute)

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
        super().__init__()
        self.env_spec = spec
        self.env_id = spec.env_id
        self.task = spec.instruction
        self.action_semantics = spec.action_semantics
        self.fps = spec.fps
        self.max_episode_steps = max_episode_steps
        self.terminate_on_success = terminate_on_success
        self.image_size = image_size

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

        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(spec.action_dim,), dtype=np.float32)
        self.camera_names: tuple[str, ...] = tuple(cameras) if render else ()
        model = raw.model
        self._camera_ids = {name: model.camera(name).id for name in self.camera_names}
        if "corner2" in self.camera_names:
            model.cam_pos[self._camera_ids["corner2"]] = CORNER2_POSES[camera_pose]
        self.camera_pose = camera_pose
        self.camera_info: dict[str, dict[str, Any]] = {
            name: self._describe_camera(name, camera_pose) for name in self.camera_names
        }
        # Metaworld clips its observation to these bounds (sawyer_xyz_env.py step()).
        low = raw.sawyer_observation_space.low.astype(np.float32)
        high = raw.sawyer_observation_space.high.astype(np.float32)
        spaces: dict[str, gym.Space] = {
            "observation.state": gym.spaces.Box(low[:4], high[:4], dtype=np.float32),
            "observation.environment_state": gym.spaces.Box(low, high, dtype=np.float32),
        }
        for name in self.camera_names:
            spaces[f"observation.images.{name}"] = gym.spaces.Box(
                0, 255, shape=(image_size, image_size, 3), dtype=np.uint8
            )
        self.observation_space = gym.spaces.Dict(spaces)

        # Created at the first frame, then reused for every camera and step (DESIGN §6).
        self._renderer: OffscreenRenderer | None = None
        self._elapsed_steps = 0
        if seed is not None:
            self.np_random, _ = gym.utils.seeding.np_random(seed)
        log.debug("built %s: cameras %s at %d px", self.env_id, self.camera_names, image_size)

    # -- gymnasium API ---------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Every episode is fixed by one integer seed: the one given, or the next from this env's generator
        # (itself seeded by make_env(seed=...)), so a run of unseeded resets is reproducible too.
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self._raw.seed(episode_seed)
        raw_obs, _ = self._raw.reset()
        self._elapsed_steps = 0
        info = {"success": False, "episode_seed": episode_seed}
        return self._observation(raw_obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._elapsed_steps >= self.max_episode_steps:
            raise RuntimeError(
                f"{self.env_id}: episode truncated at {self.max_episode_steps} steps; reset() first"
            )
        action = np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)
        raw_obs, reward, _, _, raw_info = self._raw.step(action)
        self._elapsed_steps += 1
        success = bool(raw_info.get("success", 0.0))
        terminated = success and self.terminate_on_success
        truncated = self._elapsed_steps >= self.max_episode_steps
        info = {**raw_info, "success": success}
        return self._observation(raw_obs), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._raw.close()

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def raw_env(self) -> Any:
        """The underlying Metaworld env (privileged access for experts and debugging)."""
        return self._raw

    def _observation(self, raw_obs: np.ndarray) -> dict[str, np.ndarray]:
        raw_obs = np.asarray(raw_obs, dtype=np.float32)
        obs = {
            # Metaworld's obs[:4] is the hand (end-effector) position and the normalised gripper opening.
            "observation.state": raw_obs[:4].copy(),
            "observation.environment_state": raw_obs,
        }
        for name in self.camera_names:
            obs[f"observation.images.{name}"] = self.render_camera(name)
        return obs

    def render_camera(self, name: str) -> np.ndarray:
        """An upright uint8 (H, W, 3) frame of the current state from one of this env's cameras."""
        if self._renderer is None:
            self._renderer = OffscreenRenderer(self._raw.model, self.image_size, self.image_size)
        return self._renderer.render(
            self._raw.data, self._camera_ids[name], rotate_180=name in _UPSIDE_DOWN_CAMERAS
        )

    def _describe_camera(self, name: str, camera_pose: str) -> dict[str, Any]:
        model = self._raw.model
        cam = model.camera(name)
        info: dict[str, Any] = {
            "pos": [float(v) for v in cam.pos],
            "quat_wxyz": [float(v) for v in cam.quat],
            "fovy_deg": float(cam.fovy[0]),
            "width": self.image_size,
            "height": self.image_size,
            # A tracking camera's pose is relative to its parent body, a fixed one's to the world.
            "parent_body": model.body(int(cam.bodyid[0])).name,
            "rotated_180": name in _UPSIDE_DOWN_CAMERAS,
        }
        if name == "corner2":
            info["pose_preset"] = camera_pose
        return info
