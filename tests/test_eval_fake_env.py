"""A tiny fake simulator with the `visuomotor.sim` API, for fast runner and collection tests.

Importable by worker processes as `test_eval_fake_env` (pytest puts tests/ on sys.path, and the fork
server inherits it). Point reaching in 2-D: the state is the point, the goal comes from the seed, the
expert steps straight to it. Ids:

- fake/reach       the expert succeeds in ~10 steps; random almost never
- fake/reach-far   as above, farther goals
- fake/never       the goal is out of reach: the expert never succeeds
- fake/crash       reset raises (error propagation from workers)
- fake/ALL         task set: fake/reach + fake/reach-far
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

TASK_SETS = {"fake/ALL": ("fake/reach", "fake/reach-far")}
ENV_IDS = ("fake/reach", "fake/reach-far", "fake/never", "fake/crash")
STEP = 0.1
TOL = 0.05


def list_env_ids(suite: str | None = None) -> list[str]:
    return list(ENV_IDS)


def expand_env_id(env_id: str) -> list[str]:
    if env_id in TASK_SETS:
        return list(TASK_SETS[env_id])
    if env_id in ENV_IDS:
        return [env_id]
    raise ValueError(
        f"unknown env id {env_id!r}. Valid ids: {', '.join(ENV_IDS)}; sets: {', '.join(TASK_SETS)}"
    )


class FakeEnv(gym.Env):
    fps = 10

    def __init__(
        self,
        env_id: str,
        cameras=("corner2",),
        image_size=16,
        render=True,
        max_episode_steps=None,
        terminate_on_success=True,
    ):
        if env_id not in ENV_IDS:
            raise ValueError(f"unknown env id {env_id!r}")
        self.env_id = env_id
        self.terminate_on_success = terminate_on_success
        self.task = f"reach the goal ({env_id})"
        self.camera_names = tuple(cameras) if render else ()
        self.camera_info = {c: {"pos": [0.0, 0.0, 1.0], "size": image_size} for c in self.camera_names}
        self.image_size = image_size
        self.render_images = render
        self.max_episode_steps = max_episode_steps or 30
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._rng = np.random.default_rng(0)
        self.pos = np.zeros(2, np.float32)
        self.goal = np.zeros(2, np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None):
        if self.env_id == "fake/crash":
            raise RuntimeError("fake/crash: the simulator exploded")
        rng = np.random.default_rng(seed)
        scale = {"fake/reach": 0.6, "fake/reach-far": 1.0, "fake/never": 1.0}[self.env_id]
        self.goal = rng.uniform(-scale, scale, 2).astype(np.float32)
        if self.env_id == "fake/never":
            self.goal = self.goal + np.float32(100.0)  # out of the workspace
        self.pos = rng.uniform(-0.1, 0.1, 2).astype(np.float32)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, np.float32), -1, 1)
        self.pos = np.clip(self.pos + STEP * a, -1.5, 1.5).astype(np.float32)
        self.t += 1
        dist = float(np.linalg.norm(self.pos - self.goal))
        success = dist < TOL
        truncated = self.t >= self.max_episode_steps
        terminated = success and self.terminate_on_success
        return self._obs(), -dist, terminated, truncated, {"success": success}

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {
            "observation.state": self.pos.copy(),
            "observation.environment_state": np.concatenate([self.pos, self.goal]).astype(np.float32),
        }
        for cam in self.camera_names:
            img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
            ij = np.clip(((self.pos + 1.5) / 3.0 * (self.image_size - 1)).astype(int), 0, self.image_size - 1)
            img[ij[1], ij[0]] = 255
            img[..., 2] = self.t % 256
            obs[f"observation.images.{cam}"] = img
        return obs


class FakeExpert:
    def __init__(self, env: FakeEnv):
        self.env = env

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["observation.environment_state"]
        delta = (state[2:] - state[:2]) / STEP
        return np.clip(delta, -1, 1).astype(np.float32) * 1.5  # deliberately out of range: gets clipped


def make_env(
    env_id,
    cameras=("corner2",),
    image_size=16,
    render=True,
    seed=None,
    max_episode_steps=None,
    *,
    terminate_on_success=True,
):
    cams = tuple(cameras or ("corner2",))
    return FakeEnv(env_id, cams, image_size, render, max_episode_steps, terminate_on_success)


def make_expert(env: FakeEnv) -> FakeExpert:
    return FakeExpert(env)


def test_fake_expert_succeeds_and_random_fails():
    env = make_env("fake/reach")
    obs, _ = env.reset(seed=0)
    expert = make_expert(env)
    for _ in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if terminated or truncated:
            break
    assert info["success"]
    assert obs["observation.images.corner2"].shape == (16, 16, 3)


def test_fake_expand_env_id():
    assert expand_env_id("fake/ALL") == ["fake/reach", "fake/reach-far"]
    assert expand_env_id("fake/reach") == ["fake/reach"]
