"""Simulated environments: one registry of env ids, gymnasium envs with the standard keys, scripted experts.

    from visuomotor.sim import make_env, make_expert, expand_env_id, list_env_ids

    env = make_env("metaworld/pick-place-v3", image_size=64)
    expert = make_expert(env)
    obs, info = env.reset(seed=0)
    expert.reset()
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))

Importing this package is cheap: the simulators (metaworld ~2.5 s, robosuite ~5 s) are imported only when an
env of theirs is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from visuomotor.errors import InvalidInputError
from visuomotor.sim.registry import (
    DEFAULT_CORNER2_POSE,
    REGISTRY,
    TASK_SETS,
    EnvSpec,
    check_camera_pose,
    expand_env_id,
    get_spec,
    list_env_ids,
)

if TYPE_CHECKING:
    import gymnasium as gym

    from visuomotor.sim.experts import Expert

__all__ = [
    "REGISTRY",
    "TASK_SETS",
    "EnvSpec",
    "expand_env_id",
    "get_spec",
    "list_env_ids",
    "make_env",
    "make_expert",
]


def make_env(
    env_id: str,
    cameras: Sequence[str] | None = None,
    image_size: int = 64,
    render: bool = True,
    seed: int | None = None,
    max_episode_steps: int | None = None,
    *,
    terminate_on_success: bool = True,
    camera_pose: str | None = None,
) -> gym.Env:
    """Build the gymnasium env of one single-task id (see `list_env_ids()`).

    Args:
        env_id: "metaworld/<task>-v3" or "robosuite/<Task>"; a task set must be expanded first.
        cameras: cameras to render, each giving `observation.images.<camera>`; None -> the spec's default
            (Metaworld: corner2; robosuite: agentview and robot0_eye_in_hand).
        image_size: height = width of every image, in pixels.
        render: False -> no image keys and no renderer at all (fast path for tests and state-only work).
        seed: seeds the env's generator, from which resets without a seed draw their episode seed.
        max_episode_steps: `truncated` is set at this step; None -> the spec's default.
        terminate_on_success: `terminated` is set at the first successful step (LeRobot's convention for
            these suites); False runs to `max_episode_steps` (success stays in `info["success"]`).
        camera_pose: Metaworld only, the corner2 pose: "lerobot" (default, cam_pos (0.75, 0.075, 0.7)),
            "dp3" or "metaworld" (the original, far from the table). Recorded in `env.camera_info`.

    Raises:
        ValueError: unknown env id (the message lists the valid ids and task sets), unknown camera (lists the
            env's cameras), bad image size, episode limit or camera pose.
    """
    spec = get_spec(env_id)
    if isinstance(cameras, str):  # a bare string would be split into letters by tuple()
        cameras = (cameras,)
    cameras = spec.default_cameras if cameras is None else tuple(cameras)
    unknown = [c for c in cameras if c not in spec.valid_cameras]
    if unknown:
        raise InvalidInputError(
            f"unknown camera(s) {unknown} for {env_id}. Valid cameras: {', '.join(spec.valid_cameras)}"
        )
    if len(set(cameras)) != len(cameras):
        raise InvalidInputError(f"duplicate cameras in {list(cameras)}")
    if render and not cameras:
        raise InvalidInputError("render=True needs at least one camera (or pass render=False)")
    if image_size <= 0:
        raise InvalidInputError(f"image_size must be positive, got {image_size}")
    max_steps = spec.max_episode_steps if max_episode_steps is None else int(max_episode_steps)
    if max_steps <= 0:
        raise InvalidInputError(f"max_episode_steps must be positive, got {max_steps}")

    pose = check_camera_pose(env_id, camera_pose)
    if spec.suite == "metaworld":
        from visuomotor.sim.metaworld_env import MetaworldEnv

        pose = DEFAULT_CORNER2_POSE if pose is None else pose
        return MetaworldEnv(spec, cameras, image_size, render, seed, max_steps, terminate_on_success, pose)

    from visuomotor.sim.robosuite_env import RobosuiteEnv

    return RobosuiteEnv(spec, cameras, image_size, render, seed, max_steps, terminate_on_success)


def make_expert(env: gym.Env) -> Expert:
    """The scripted expert for an env from `make_env` (wrappers are looked through)."""
    from visuomotor.sim.experts import make_expert as _make_expert

    return _make_expert(env)
