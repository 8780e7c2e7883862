"""The part of every simulated env that does not depend on the simulator: bookkeeping, seeding, stepping.

`SimEnv` holds what Metaworld and robosuite envs share (the standard keys, the episode seed, truncation, one
offscreen renderer per env); a subclass builds its simulator and says how to reset and step it, where its
MuJoCo model is, and what the proprioceptive and environment state are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from visuomotor.keys import image_key
from visuomotor.sim.registry import EnvSpec
from visuomotor.sim.rendering import OffscreenRenderer

if TYPE_CHECKING:
    # Types only: `mujoco` must first be imported by visuomotor.sim.rendering, after its MUJOCO_GL default.
    import mujoco


class SimEnv(gym.Env):
    """A single-task MuJoCo env with the standard keys (architecture.md §Conventions). Subclasses wrap one
    simulator."""

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium's convention: a class attribute)

    _upside_down_cameras: frozenset[str] = frozenset()
    """Cameras whose images need both axes flipped to come out upright."""
    _hidden_geom_groups: tuple[int, ...] = ()
    """Geom groups the renderer does not draw."""

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
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(spec.action_dim,), dtype=np.float32)
        self.camera_names: tuple[str, ...] = tuple(cameras) if render else ()
        self._raw: Any = None
        self._raw_obs: Any = None
        # Created at the first frame, then reused for every camera and step (architecture.md §Rendering).
        self._renderer: OffscreenRenderer | None = None
        self._elapsed_steps = 0
        if seed is not None:
            self.np_random, _ = gym.utils.seeding.np_random(seed)

    def _init_cameras_and_spaces(self, state_space: gym.spaces.Box, env_state_space: gym.spaces.Box) -> None:
        """Look up the cameras in the built model and set `camera_info` and `observation_space`.

        Called by the subclass once its simulator (`self._raw`) exists and its cameras are posed.
        """
        model = self._model
        self._camera_ids = {name: model.camera(name).id for name in self.camera_names}
        self.camera_info: dict[str, dict[str, Any]] = {
            name: self._describe_camera(name) for name in self.camera_names
        }
        spaces: dict[str, gym.Space] = {
            "observation.state": state_space,
            "observation.environment_state": env_state_space,
        }
        for name in self.camera_names:
            spaces[image_key(name)] = gym.spaces.Box(
                0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8
            )
        self.observation_space = gym.spaces.Dict(spaces)
        # The subclass's module logger, so the message names the suite as it did before this base existed.
        logging.getLogger(type(self).__module__).debug(
            "built %s: cameras %s at %d px", self.env_id, self.camera_names, self.image_size
        )

    # -- what a subclass provides ----------------------------------------------------------------------

    @property
    def _model(self) -> mujoco.MjModel:
        """The plain MuJoCo model the cameras and the renderer read."""
        raise NotImplementedError

    @property
    def _data(self) -> mujoco.MjData:
        """The plain MuJoCo data of the current state."""
        raise NotImplementedError

    def _reset_raw(self, episode_seed: int) -> Any:
        """Reset the simulator so that its episode is fixed by `episode_seed`; return its raw observation."""
        raise NotImplementedError

    def _step_raw(self, action: np.ndarray) -> tuple[Any, float, bool, dict[str, Any]]:
        """Step the simulator: (raw observation, reward, success, the simulator's info)."""
        raise NotImplementedError

    def _state_observation(self, raw_obs: Any) -> dict[str, np.ndarray]:
        """`observation.state` and `observation.environment_state` from a raw observation."""
        raise NotImplementedError

    # -- gymnasium API ---------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # Every episode is fixed by one integer seed: the one given, or the next from this env's generator
        # (itself seeded by make_env(seed=...)), so a run of unseeded resets is reproducible too.
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self._raw_obs = self._reset_raw(episode_seed)
        self._elapsed_steps = 0
        return self._observation(), {"success": False, "episode_seed": episode_seed}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._elapsed_steps >= self.max_episode_steps:
            raise RuntimeError(
                f"{self.env_id}: episode truncated at {self.max_episode_steps} steps; reset() first"
            )
        self._raw_obs, reward, success, raw_info = self._step_raw(action)
        self._elapsed_steps += 1
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
        """The underlying simulator env (privileged access for experts and debugging)."""
        return self._raw

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self._state_observation(self._raw_obs)
        for name in self.camera_names:
            obs[image_key(name)] = self.render_camera(name)
        return obs

    def render_camera(self, name: str) -> np.ndarray:
        """An upright uint8 (H, W, 3) frame of the current state from one of this env's cameras."""
        if self._renderer is None:
            self._renderer = OffscreenRenderer(
                self._model, self.image_size, self.image_size, hidden_geom_groups=self._hidden_geom_groups
            )
        return self._renderer.render(
            self._data, self._camera_ids[name], rotate_180=name in self._upside_down_cameras
        )

    def _describe_camera(self, name: str) -> dict[str, Any]:
        model = self._model
        cam = model.camera(name)
        return {
            "pos": [float(v) for v in cam.pos],
            "quat_wxyz": [float(v) for v in cam.quat],
            "fovy_deg": float(cam.fovy[0]),
            "width": self.image_size,
            "height": self.image_size,
            # A tracking camera (e.g. on a robot link) moves with its parent body and its pose is relative
            # to that body; a fixed one's is relative to the world.
            "parent_body": model.body(int(cam.bodyid[0])).name,
            "rotated_180": name in self._upside_down_cameras,
        }
