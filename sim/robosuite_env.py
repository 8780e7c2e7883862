"""robosuite single-arm tasks (Panda, OSC_POSE) as gymnasium envs with the DESIGN §3 observation keys.

robosuite is imported only when one of these envs is built: it takes ~5 s to import, and Metaworld users
should not pay for it. Images come from our own `OffscreenRenderer` on robosuite's model rather than from
robosuite's camera observables, so both suites share one renderer (shadows off, one per env) and robosuite
needs no offscreen context of its own.
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

# robosuite logs to "robosuite_logs" with its own console handler. At import it warns about a missing
# private macro file, robosuite_models and mink, none of which we use, and at every make it logs at INFO.
_HARMLESS_WARNINGS = ("private macro file", "setup_macros.py", "robosuite_models", "mink")


class _QuietRobosuite(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not any(text in message for text in _HARMLESS_WARNINGS)


_QUIET_FILTER = _QuietRobosuite()


def _import_robosuite() -> Any:
    # A filter on the logger itself: robosuite resets the logger's level and handlers at import, not filters.
    robosuite_logger = logging.getLogger("robosuite_logs")
    if _QUIET_FILTER not in robosuite_logger.filters:
        robosuite_logger.addFilter(_QUIET_FILTER)
    import robosuite

    return robosuite


class RobosuiteEnv(gym.Env):
    """One robosuite task with a Panda under OSC_POSE. Build it with `visuomotor.sim.make_env`."""

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

        robosuite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        # Panda's default composite config: OSC_POSE arm, delta input in the base frame, outputs clipped to
        # 5 cm and 0.5 rad per step, and a binary gripper (-1 open, +1 close).
        controller = load_composite_controller_config(robot="Panda")
        self._raw = robosuite.make(
            spec.task_name,
            robots="Panda",
            controller_configs=controller,
            has_renderer=False,
            has_offscreen_renderer=False,  # we render with our own renderer, see the module docstring
            use_camera_obs=False,
            use_object_obs=True,
            reward_shaping=False,  # sparse: 1 on success
            control_freq=spec.fps,
            horizon=max_episode_steps,
            ignore_done=True,  # we truncate ourselves
            # A soft reset keeps one MjModel for the env's lifetime (the renderer is bound to it) and is
            # faster; object placement is still resampled at every reset.
            hard_reset=False,
        )
        self._raw_obs: dict[str, np.ndarray] = {}
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(spec.action_dim,), dtype=np.float32)
        self.camera_names: tuple[str, ...] = tuple(cameras) if render else ()
        model = self._raw.sim.model._model  # the plain mujoco.MjModel behind robosuite's binding
        self._camera_ids = {name: model.camera(name).id for name in self.camera_names}
        self.camera_info: dict[str, dict[str, Any]] = {
            name: self._describe_camera(name) for name in self.camera_names
        }
        spaces: dict[str, gym.Space] = {
            "observation.state": gym.spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32),
            "observation.environment_state": gym.spaces.Box(
                -np.inf, np.inf, shape=(spec.env_state_dim,), dtype=np.float32
            ),
        }
        for name in self.camera_names:
            spaces[f"observation.images.{name}"] = gym.spaces.Box(
                0, 255, shape=(image_size, image_size, 3), dtype=np.uint8
            )
        self.observation_space = gym.spaces.Dict(spaces)
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
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        # robosuite samples object placements and the robot's initial joint noise from the global
        # np.random. Seed it for the reset only and restore it after, so the caller's global stream is
        # untouched (Metaworld's benchmark envs do the same, metaworld/env_dict.py).
        saved = np.random.get_state()
        np.random.seed(episode_seed)
        try:
            self._raw_obs = self._raw.reset()
        finally:
            np.random.set_state(saved)
        self._elapsed_steps = 0
        return self._observation(), {"success": False, "episode_seed": episode_seed}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._elapsed_steps >= self.max_episode_steps:
            raise RuntimeError(
                f"{self.env_id}: episode truncated at {self.max_episode_steps} steps; reset() first"
            )
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        self._raw_obs, reward, _, raw_info = self._raw.step(action)
        self._elapsed_steps += 1
        success = bool(self._raw._check_success())
        terminated = success and self.terminate_on_success
        truncated = self._elapsed_steps >= self.max_episode_steps
        info = {**raw_info, "success": success}
        return self._observation(), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._raw.close()

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def raw_env(self) -> Any:
        """The underlying robosuite env (privileged access for experts and debugging)."""
        return self._raw

    @property
    def privileged_observation(self) -> dict[str, np.ndarray]:
        """robosuite's own observation dict of the current step (object poses by name, ...)."""
        return self._raw_obs

    def _observation(self) -> dict[str, np.ndarray]:
        raw = self._raw_obs
        state = np.concatenate([raw["robot0_eef_pos"], raw["robot0_eef_quat"], raw["robot0_gripper_qpos"]])
        obs = {
            "observation.state": state.astype(np.float32),
            "observation.environment_state": np.asarray(raw["object-state"], dtype=np.float32),
        }
        for name in self.camera_names:
            obs[f"observation.images.{name}"] = self.render_camera(name)
        return obs

    def render_camera(self, name: str) -> np.ndarray:
        """An upright uint8 (H, W, 3) frame of the current state from one of this env's cameras."""
        if self._renderer is None:
            # Geom group 0 holds robosuite's collision geoms; its own renderer hides them too
            # (render_collision_mesh=False), and drawing them would double the cost.
            self._renderer = OffscreenRenderer(
                self._raw.sim.model._model, self.image_size, self.image_size, hidden_geom_groups=(0,)
            )
        # robosuite's own offscreen images come out upside down because it skips the flip of OpenGL's
        # bottom-up rows; OffscreenRenderer does that flip, so frames here are upright.
        return self._renderer.render(self._raw.sim.data._data, self._camera_ids[name])

    def _describe_camera(self, name: str) -> dict[str, Any]:
        model = self._raw.sim.model._model
        cam = model.camera(name)
        return {
            "pos": [float(v) for v in cam.pos],
            "quat_wxyz": [float(v) for v in cam.quat],
            "fovy_deg": float(cam.fovy[0]),
            "width": self.image_size,
            "height": self.image_size,
            # A camera on a robot link moves with it; its pose is relative to that body.
            "parent_body": model.body(int(cam.bodyid[0])).name,
            "rotated_180": False,
        }
