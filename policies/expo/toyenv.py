"""A pure-numpy 2-D point mass with a sparse goal (the notes' §6 first choice of a tiny task), for the
online learner's tests and quick smoke runs: microseconds a step, deterministic, no simulator.

State (x, y, vx, vy); action = acceleration in [-1, 1]^2; the goal is drawn per episode seed. Success
(and termination, as Metaworld with `terminate_on_success`) when the point is within `radius` of the
goal; the episode is truncated at `max_episode_steps`. Observations use the standard keys:
`observation.state` (x, y, vx, vy) and `observation.environment_state` (the same plus the goal).
A noisy proportional-derivative expert makes demonstrations (`collect_demos`) in the store format, with
the metadata a scripted collection writes (per-episode success, settle_steps 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from visuomotor.errors import InvalidInputError

TOY_ENV_ID = "toy/pointmass"
TASK = "move the point to the goal"


class PointMassEnv(gym.Env):
    """The point mass; see the module docstring."""

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium's convention)

    def __init__(self, max_episode_steps: int = 40, radius: float = 0.05) -> None:
        super().__init__()
        self.env_id, self.task, self.fps = TOY_ENV_ID, TASK, 10
        self.max_episode_steps, self.radius = max_episode_steps, radius
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "observation.state": gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32),
                "observation.environment_state": gym.spaces.Box(
                    -np.inf, np.inf, shape=(6,), dtype=np.float32
                ),
            }
        )
        self._pos = self._vel = self._goal = np.zeros(2)
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-0.2, 0.2, 2)
        angle = self.np_random.uniform(0, 2 * np.pi)
        self._goal = 0.6 * np.array([np.cos(angle), np.sin(angle)])
        self._vel = np.zeros(2)
        self._steps = 0
        return self._obs(), {"success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self._vel = 0.9 * self._vel + 0.02 * a
        self._pos = np.clip(self._pos + self._vel, -1.0, 1.0)
        self._steps += 1
        success = bool(np.linalg.norm(self._pos - self._goal) < self.radius)
        truncated = self._steps >= self.max_episode_steps
        return self._obs(), float(success), success, truncated, {"success": success}

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.concatenate([self._pos, self._vel]).astype(np.float32)
        return {
            "observation.state": state,
            "observation.environment_state": np.concatenate([state, self._goal]).astype(np.float32),
        }


def make_toy_env(env_id: str = TOY_ENV_ID, max_episode_steps: int | None = None) -> PointMassEnv:
    if env_id != TOY_ENV_ID:
        raise InvalidInputError(f"unknown toy env {env_id!r}; the toy env is {TOY_ENV_ID!r}")
    return PointMassEnv(max_episode_steps or 40)


def expert_action(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Proportional-derivative control towards the goal."""
    s = obs["observation.environment_state"]
    return np.clip(2.0 * (s[4:6] - s[0:2]) - 10.0 * s[2:4], -1.0, 1.0).astype(np.float32)


def collect_demos(
    path: str | Path, episodes: int, noise: float = 0.6, seed: int = 0, max_steps: int = 40
) -> Any:
    """An episode store of `episodes` noisy expert episodes (seeds seed*1000 + i), failures kept."""
    from visuomotor.datasets import EpisodeStore

    env = PointMassEnv(max_steps)
    store = EpisodeStore.create(
        path, fps=env.fps, env_id=TOY_ENV_ID, action_space={"type": "acceleration", "dim": 2},
        attrs={"collection": {"policy": "pd expert", "action_noise": noise, "settle_steps": 0}},
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + i)
        frames: dict[str, list[np.ndarray]] = {k: [] for k in obs}
        actions, success = [], False
        for _ in range(max_steps):
            action = np.clip(expert_action(obs) + rng.normal(0, noise, 2), -1, 1).astype(np.float32)
            for k, v in obs.items():
                frames[k].append(v)
            actions.append(action)
            obs, _, success, truncated, _ = env.step(action)
            if success or truncated:
                break
        data = {k: np.stack(v) for k, v in frames.items()} | {"action": np.stack(actions)}
        store.append_episode(
            data, task=TASK, meta={"seed": seed * 1000 + i, "success": success, "settle_steps": 0}
        )
    return store
