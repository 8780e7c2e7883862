"""robosuite single-arm tasks (Panda, OSC_POSE) as gymnasium envs with the standard keys
(architecture.md §Conventions).

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

from visuomotor.sim.base import SimEnv
from visuomotor.sim.registry import EnvSpec

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


class RobosuiteEnv(SimEnv):
    """One robosuite task with a Panda under OSC_POSE. Build it with `visuomotor.sim.make_env`."""

    # Geom group 0 holds robosuite's collision geoms; its own renderer hides them too
    # (render_collision_mesh=False), and drawing them would double the cost.
    _hidden_geom_groups = (0,)
    # `_upside_down_cameras` stays empty: robosuite's own offscreen images come out upside down because it
    # skips the flip of OpenGL's bottom-up rows; OffscreenRenderer does that flip, so frames here are upright.

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
        super().__init__(spec, cameras, image_size, render, seed, max_episode_steps, terminate_on_success)
        robosuite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        # Panda's default composite config: OSC_POSE arm, delta input in the base frame, outputs clipped to
        # 5 cm and 0.5 rad per step, and a binary gripper (-1 open, +1 close).
        controller = load_composite_controller_config(robot="Panda")
        # Building the env draws from the global np.random too (its first reset), and with soft resets
        # some of that state outlives later resets: seed the build as well, so an env's episodes depend
        # on the episode seed only, not on what the process drew before.
        saved = np.random.get_state()
        np.random.seed(0)
        try:
            self._raw = self._make(robosuite, spec, controller, max_episode_steps)
        finally:
            np.random.set_state(saved)
        self._raw_obs: dict[str, np.ndarray] = {}
        self._init_cameras_and_spaces(
            state_space=gym.spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32),
            env_state_space=gym.spaces.Box(-np.inf, np.inf, shape=(spec.env_state_dim,), dtype=np.float32),
        )

    @staticmethod
    def _make(robosuite: Any, spec: EnvSpec, controller: dict, max_episode_steps: int) -> Any:
        return robosuite.make(
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

    @property
    def _model(self) -> Any:
        return self._raw.sim.model._model  # the plain mujoco.MjModel behind robosuite's binding

    @property
    def _data(self) -> Any:
        return self._raw.sim.data._data

    def _reset_raw(self, episode_seed: int) -> dict[str, np.ndarray]:
        # robosuite samples object placements and the robot's initial joint noise from the global
        # np.random. Seed it for the reset only and restore it after, so the caller's global stream is
        # untouched (Metaworld's benchmark envs do the same, metaworld/env_dict.py).
        saved = np.random.get_state()
        np.random.seed(episode_seed)
        try:
            return self._raw.reset()
        finally:
            np.random.set_state(saved)

    def _step_raw(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_space.shape), -1.0, 1.0)
        raw_obs, reward, _, raw_info = self._raw.step(action)
        return raw_obs, reward, bool(self._raw._check_success()), raw_info

    def _state_observation(self, raw_obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        eef_pos, eef_quat = raw_obs["robot0_eef_pos"], raw_obs["robot0_eef_quat"]
        state = np.concatenate([eef_pos, eef_quat, raw_obs["robot0_gripper_qpos"]])
        return {
            "observation.state": state.astype(np.float32),
            "observation.environment_state": np.asarray(raw_obs["object-state"], dtype=np.float32),
        }

    @property
    def privileged_observation(self) -> dict[str, np.ndarray]:
        """robosuite's own observation dict of the current step (object poses by name, ...)."""
        return self._raw_obs
