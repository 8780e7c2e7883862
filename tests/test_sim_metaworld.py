"""Metaworld envs: every task builds and steps; seeding, rendering and the scripted experts behave."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from visuomotor.sim import get_spec, list_env_ids, make_env, make_expert

STATE_KEYS = ("observation.state", "observation.environment_state")


def _check_state_obs(env: gym.Env, obs: dict[str, np.ndarray]) -> None:
    assert obs["observation.state"].shape == (4,) and obs["observation.state"].dtype == np.float32
    env_state = obs["observation.environment_state"]
    assert env_state.shape == (39,) and env_state.dtype == np.float32
    assert np.all(np.isfinite(env_state))
    # observation.state is the hand position and gripper opening at the front of Metaworld's obs.
    np.testing.assert_array_equal(obs["observation.state"], env_state[:4])
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", list_env_ids("metaworld"))
def test_every_task_builds_resets_and_steps(env_id: str) -> None:
    env = make_env(env_id, render=False)
    try:
        obs, info = env.reset(seed=0)
        assert set(obs) == set(STATE_KEYS)  # render=False: no image keys
        _check_state_obs(env, obs)
        assert info["success"] is False
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        _check_state_obs(env, obs)
        assert isinstance(reward, float) and np.isfinite(reward)
        assert isinstance(info["success"], bool)
        assert (terminated, truncated) == (False, False)
        assert env.env_id == env_id and env.task == get_spec(env_id).instruction
        assert env.action_space.shape == (4,) and env.fps == 80 and env.max_episode_steps == 500
        assert env.camera_names == () and env.camera_info == {}
    finally:
        env.close()


def test_state_layout_names_what_the_environment_state_holds() -> None:
    from visuomotor.sim.metaworld_env import STATE_LAYOUT as L

    env = make_env("metaworld/pick-place-v3", render=False)
    try:
        first, _ = env.reset(seed=1)
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32))
        raw = env.unwrapped._raw
        s = obs["observation.environment_state"]
        np.testing.assert_allclose(s[L["hand"] : L["hand"] + 3], raw.get_endeff_pos(), atol=1e-6)
        np.testing.assert_allclose(s[L["obj1"] : L["obj1"] + 3], raw._get_pos_objects()[:3], atol=1e-6)
        np.testing.assert_allclose(s[L["goal"] : L["goal"] + 3], raw._target_pos, atol=1e-6)
        prev = first["observation.environment_state"]
        np.testing.assert_allclose(s[L["previous"] : L["previous"] + 18], prev[:18], atol=1e-6)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["metaworld/reach-v3", "metaworld/peg-insert-side-v3"])
def test_relative_state_does_not_see_where_the_scene_is(env_id: str) -> None:
    """Moving hand, object and goal together leaves the relative state unchanged (object 2's slots stay
    zero in one-object tasks, so a difference with them would leak an absolute position)."""
    import torch

    from visuomotor.policies.common.differences import state_differences
    from visuomotor.sim.metaworld_env import RELATIVE_STATE, STATE_LAYOUT

    env = make_env(env_id, render=False)
    try:
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(np.array([0.5, -0.5, 0.2, 0.0], dtype=np.float32))
    finally:
        env.close()
    state = torch.as_tensor(obs["observation.environment_state"], dtype=torch.float64)
    assert torch.all(state[STATE_LAYOUT["obj2"] : STATE_LAYOUT["obj2"] + 3] == 0)
    moved = state.clone()
    for part in ("hand", "obj1", "goal"):
        for start in (STATE_LAYOUT[part], STATE_LAYOUT[part] + STATE_LAYOUT["previous"]):
            if part != "goal" or start == STATE_LAYOUT["goal"]:
                moved[start : start + 3] += torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)

    def features(s: torch.Tensor) -> torch.Tensor:
        kept = s[list(RELATIVE_STATE["state_dims"])]
        return torch.cat([kept, state_differences(s, RELATIVE_STATE["state_differences"])])

    assert torch.allclose(features(moved), features(state))
    assert not torch.allclose(moved, state)


def test_seeded_resets_are_reproducible_and_seeds_change_the_task() -> None:
    env = make_env("metaworld/pick-place-v3", render=False)
    a, _ = env.reset(seed=3)
    env.step(np.ones(4, dtype=np.float32))
    b, _ = env.reset(seed=3)
    c, _ = env.reset(seed=4)
    np.testing.assert_array_equal(a["observation.environment_state"], b["observation.environment_state"])
    # obs[4:7] is the puck position and obs[36:39] the goal: both are drawn from the seed.
    assert not np.allclose(a["observation.environment_state"][4:7], c["observation.environment_state"][4:7])
    assert not np.allclose(a["observation.environment_state"][36:], c["observation.environment_state"][36:])
    # Unseeded resets draw from the generator seeded at construction: two envs built alike agree.
    first = [make_env("metaworld/pick-place-v3", render=False, seed=7) for _ in range(2)]
    runs = [[e.reset()[0]["observation.environment_state"] for _ in range(3)] for e in first]
    for x, y in zip(*runs, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(runs[0][0][36:], runs[0][1][36:])


def test_seeds_give_many_distinct_tasks() -> None:
    env = make_env("metaworld/reach-v3", render=False)
    goals = {
        tuple(np.round(env.reset(seed=s)[0]["observation.environment_state"][36:], 5)) for s in range(20)
    }
    assert len(goals) == 20


@pytest.mark.filterwarnings("ignore:.*infinity")  # Metaworld's own bounds are infinite for a few entries
def test_passes_gymnasium_env_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    env = make_env("metaworld/push-v3", image_size=32)
    check_env(env, skip_render_check=True)  # spaces, seeding determinism, obs inside the space
    env.close()


def test_truncation_and_termination() -> None:
    env = make_env("metaworld/reach-v3", render=False, max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, dtype=np.float32))[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def _image_is_a_scene(image: np.ndarray, size: int) -> None:
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"]
    # Not blank: pixel values vary across the image, in every row band and column band.
    assert image.std() > 10
    assert all(band.std() > 3 for band in np.array_split(image, 4, axis=0))
    assert all(band.std() > 3 for band in np.array_split(image, 4, axis=1))


@pytest.mark.parametrize(
    "env_id", ["metaworld/pick-place-v3", "metaworld/door-open-v3", "metaworld/reach-v3"]
)
def test_rendered_images(env_id: str) -> None:
    env = make_env(env_id, cameras=("corner2", "gripperPOV"), image_size=48)
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs) == {*STATE_KEYS, "observation.images.corner2", "observation.images.gripperPOV"}
        assert env.observation_space.contains(obs)
        for camera in env.camera_names:
            _image_is_a_scene(obs[f"observation.images.{camera}"], 48)
        same, _ = env.reset(seed=0)
        other, _ = env.reset(seed=1)
        np.testing.assert_array_equal(obs["observation.images.corner2"], same["observation.images.corner2"])
        assert not np.array_equal(obs["observation.images.corner2"], other["observation.images.corner2"])
        moved = env.step(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32))[0]
        assert not np.array_equal(moved["observation.images.corner2"], other["observation.images.corner2"])
        info = env.camera_info["corner2"]
        assert info["pose_preset"] == "lerobot" and info["pos"] == pytest.approx([0.75, 0.075, 0.7])
        assert (info["width"], info["height"]) == (48, 48)
    finally:
        env.close()


def test_corner2_image_is_upright() -> None:
    # From the LeRobot pose the table top is in the lower part of an upright image and the white floor
    # and grey wall in the upper part: the bottom rows are darker (brown wood) than the top rows.
    env = make_env("metaworld/reach-v3", image_size=64)
    image = env.reset(seed=0)[0]["observation.images.corner2"].astype(float)
    assert image[-16:].mean() < image[:16].mean()
    env.close()


def test_camera_pose_option() -> None:
    images = {}
    for pose in ("lerobot", "metaworld"):
        env = make_env("metaworld/reach-v3", image_size=32, camera_pose=pose)
        images[pose] = env.reset(seed=0)[0]["observation.images.corner2"]
        assert env.camera_info["corner2"]["pose_preset"] == pose
        env.close()
    assert not np.array_equal(images["lerobot"], images["metaworld"])


def test_envs_with_their_own_renderers_coexist_and_close_in_any_order() -> None:
    # mujoco.Renderer.close() frees GL objects in whatever context is current, which broke the other
    # renderer under OSMesa; our renderer must not.
    a = make_env("metaworld/reach-v3", image_size=32)
    b = make_env("metaworld/door-open-v3", image_size=32)
    before = b.reset(seed=0)[0]["observation.images.corner2"]
    a.reset(seed=0)
    b.reset(seed=0)  # b's context is current when a closes
    a.close()
    after = b.reset(seed=0)[0]["observation.images.corner2"]
    np.testing.assert_array_equal(before, after)
    b.close()


@pytest.mark.parametrize(
    "env_id", ["metaworld/reach-v3", "metaworld/drawer-open-v3", "metaworld/pick-place-v3"]
)
def test_scripted_expert_succeeds(env_id: str) -> None:
    env = make_env(env_id, render=False)
    expert = make_expert(env)
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(env.max_episode_steps):
            action = expert.act(obs)
            assert action.dtype == np.float32 and env.action_space.contains(action)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert info["success"] and terminated, f"{env_id} seed {seed}: expert did not succeed"
