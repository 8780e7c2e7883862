"""`sim:<env-id>`: any visuomotor simulated env behind the `Robot` interface (architecture.md §Robots),
with optional faults for tests: injected latency, observation noise, a camera that freezes.

Observation features are the env's own keys (`observation.state`, `observation.environment_state`) and
its cameras by name; actions are `action.0` .. `action.{n-1}` in the env's action space. An episode
ends on success or at the step limit (`episode_over`); `start_episode(seed)` resets the env, so a
deployment on seeds 1,000,000 + i meets the episodes `visuomotor eval` runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from visuomotor.real_robot.robot import Robot


class SimRobot(Robot):
    def __init__(
        self,
        env_id: str,
        *,
        cameras: tuple[str, ...] | None = None,
        image_size: int = 64,
        camera_pose: str | None = None,
        max_episode_steps: int | None = None,
        latency_s: float = 0.0,
        observation_noise: float = 0.0,
        freeze_camera_after: int | None = None,
        seed: int = 0,
        **_ignored: Any,
    ) -> None:
        from visuomotor.sim.registry import get_spec

        self.env_id = env_id
        self.name = f"sim:{env_id}"
        self.spec = get_spec(env_id)
        self.action_semantics = self.spec.action_semantics
        self._make = {"cameras": cameras, "image_size": image_size, "max_episode_steps": max_episode_steps}
        if camera_pose is not None:  # Metaworld only (`sim.make_env` says so for other suites)
            self._make["camera_pose"] = camera_pose
        self.latency_s = latency_s
        self.observation_noise = observation_noise
        self.freeze_camera_after = freeze_camera_after
        self._rng = np.random.default_rng(seed)
        self._env: Any = None
        self._obs: dict[str, np.ndarray] = {}
        self._frozen: dict[str, np.ndarray] = {}
        self.steps = 0
        self.success = False
        self.episode_over = False

    # ------------------------------------------------------------------ features
    @property
    def observation_features(self) -> dict[str, Any]:
        self._require()
        return {k: tuple(v.shape) for k, v in self._named(self._obs).items()}

    @property
    def action_features(self) -> dict[str, Any]:
        return {f"action.{i}": float for i in range(self.spec.action_dim)}

    @property
    def is_connected(self) -> bool:
        return self._env is not None

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        from visuomotor.sim import make_env

        self._env = make_env(self.env_id, render=bool(self._make["cameras"]), **self._make)
        self.start_episode(0)

    def start_episode(self, seed: int) -> None:
        self._require()
        self._obs, _ = self._env.reset(seed=seed)
        self._frozen = {}
        self.steps, self.success, self.episode_over = 0, False, False

    def disconnect(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    # ------------------------------------------------------------------ acting
    def get_observation(self) -> dict[str, Any]:
        self._require()
        if self.latency_s:
            time.sleep(self.latency_s)
        obs = self._named(self._obs)
        for key, value in obs.items():
            if value.dtype == np.uint8 and self.freeze_camera_after is not None:
                if self.steps >= self.freeze_camera_after:
                    obs[key] = self._frozen.setdefault(key, value.copy())
            elif value.dtype != np.uint8 and self.observation_noise:
                obs[key] = value + self._rng.normal(0, self.observation_noise, value.shape).astype(
                    value.dtype
                )
        return obs

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        self._require()
        vector = np.array([action[f"action.{i}"] for i in range(self.spec.action_dim)], np.float32)
        sent = np.clip(vector, self._env.action_space.low, self._env.action_space.high)
        self._obs, _reward, terminated, truncated, info = self._env.step(sent)
        self.steps += 1
        self.success = self.success or bool(info.get("success", False))
        self.episode_over = bool(terminated or truncated or self.success)
        return {f"action.{i}": float(v) for i, v in enumerate(sent)}

    # ------------------------------------------------------------------ helpers
    def _require(self) -> None:
        if self._env is None:
            raise RuntimeError(f"{self.name} is not connected: call connect() first")

    @staticmethod
    def _named(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The env's observation with cameras under their plain names ("corner2"), as robots name them."""
        from visuomotor.keys import IMAGE_PREFIX, camera_of

        return {camera_of(k) if k.startswith(IMAGE_PREFIX) else k: np.asarray(v) for k, v in obs.items()}
