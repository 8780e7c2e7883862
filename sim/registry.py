"""The env registry: every single-task env id, its fixed facts, and the task sets (MT10, MT50).

Pure data, no simulator import, so listing ids and validating a CLI argument is instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from visuomotor.errors import InvalidInputError
from visuomotor.sim.instructions import METAWORLD_INSTRUCTIONS, ROBOSUITE_INSTRUCTIONS


@dataclass(frozen=True)
class EnvSpec:
    """The registry entry of one single-task env id."""

    env_id: str
    """Full id, e.g. "metaworld/pick-place-v3" or "robosuite/Lift"."""
    suite: str
    """"metaworld" or "robosuite"."""
    task_name: str
    """The simulator's own name: Metaworld's env name ("pick-place-v3") or robosuite's env name ("Lift")."""
    default_cameras: tuple[str, ...]
    """Cameras rendered when `make_env(cameras=None)`."""
    valid_cameras: tuple[str, ...]
    """Every camera of the model that `make_env` accepts."""
    max_episode_steps: int
    """Default episode limit (`truncated` is set at this step)."""
    fps: int
    """Control frequency: env steps per simulated second."""
    state_dim: int
    """Size of `observation.state`."""
    env_state_dim: int
    """Size of `observation.environment_state`."""
    action_dim: int
    """Size of the action."""
    instruction: str
    """Natural-language task text (the `task` key)."""
    action_semantics: str
    """What each action dimension means, in words (stored with datasets)."""

    def __post_init__(self) -> None:
        if self.suite not in ("metaworld", "robosuite"):
            raise ValueError(f"unknown suite {self.suite!r}")
        unknown = set(self.default_cameras) - set(self.valid_cameras)
        if unknown:
            raise ValueError(f"{self.env_id}: default cameras {sorted(unknown)} are not valid cameras")


# Metaworld v3 (metaworld/sawyer_xyz_env.py): frame_skip 5 x timestep 2.5 ms = 12.5 ms a step -> 80 Hz;
# max_path_length 500; obs is 39-d (hand 3 + gripper 1 + two objects 14 + previous frame 18 + goal 3);
# action is (dx, dy, dz, grip) in [-1, 1].
METAWORLD_CAMERAS: tuple[str, ...] = (
    "corner2",
    "corner",
    "corner3",
    "corner4",
    "topview",
    "behindGripper",
    "gripperPOV",
)
_METAWORLD_FPS = 80
_METAWORLD_MAX_STEPS = 500
_METAWORLD_ACTIONS = (
    "Metaworld v3, 4-d in [-1, 1]: (dx, dy, dz) hand mocap position delta, 1 = 1 cm per step "
    "(action_scale 1/100), then gripper effort (-1 open, +1 close)"
)

# robosuite with the Panda and OSC_POSE at robosuite's default control_freq of 20 Hz. Episode limits follow
# robomimic's evaluation horizons for the same tasks (Lift and Can 400; Stack is longer, so 500).
_ROBOSUITE_CAMERAS: tuple[str, ...] = ("agentview", "robot0_eye_in_hand", "frontview", "birdview")
_ROBOSUITE_FPS = 20
_ROBOSUITE_ACTIONS = (
    "robosuite Panda OSC_POSE, 7-d in [-1, 1]: (dx, dy, dz) end-effector position delta, 1 = 5 cm, "
    "(dax, day, daz) axis-angle orientation delta, 1 = 0.5 rad, both in the robot base frame, "
    "then gripper (-1 open, +1 close)"
)
# task -> (max_episode_steps, env_state_dim, extra cameras). env_state_dim is the length of robosuite's
# "object-state"; the cameras are those of the task's arena besides the four every task has.
_ROBOSUITE_TASKS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "Lift": (400, 10, ("sideview", "robot0_robotview")),
    "Stack": (500, 23, ("sideview", "robot0_robotview")),
    "PickPlaceCan": (400, 14, ("robot0_robotview",)),
}


def _metaworld_spec(task: str, instruction: str) -> EnvSpec:
    return EnvSpec(
        env_id=f"metaworld/{task}-v3",
        suite="metaworld",
        task_name=f"{task}-v3",
        default_cameras=("corner2",),
        valid_cameras=METAWORLD_CAMERAS,
        max_episode_steps=_METAWORLD_MAX_STEPS,
        fps=_METAWORLD_FPS,
        state_dim=4,  # hand xyz + gripper opening
        env_state_dim=39,
        action_dim=4,
        instruction=instruction,
        action_semantics=_METAWORLD_ACTIONS,
    )


def _robosuite_spec(task: str, instruction: str) -> EnvSpec:
    max_steps, env_state_dim, extra_cameras = _ROBOSUITE_TASKS[task]
    return EnvSpec(
        env_id=f"robosuite/{task}",
        suite="robosuite",
        task_name=task,
        # Diffusion Policy's robomimic image tasks use this pair (a static view and a wrist view).
        default_cameras=("agentview", "robot0_eye_in_hand"),
        valid_cameras=_ROBOSUITE_CAMERAS + extra_cameras,
        max_episode_steps=max_steps,
        fps=_ROBOSUITE_FPS,
        state_dim=9,  # eef pos 3 + eef quat (x, y, z, w) 4 + gripper finger qpos 2
        env_state_dim=env_state_dim,
        action_dim=7,  # OSC_POSE delta (dx, dy, dz, dax, day, daz) + gripper
        instruction=instruction,
        action_semantics=_ROBOSUITE_ACTIONS,
    )


REGISTRY: dict[str, EnvSpec] = {
    spec.env_id: spec
    for spec in [
        *(_metaworld_spec(task, text) for task, text in METAWORLD_INSTRUCTIONS.items()),
        *(_robosuite_spec(task, text) for task, text in ROBOSUITE_INSTRUCTIONS.items()),
    ]
}

# Task sets: name -> single-task ids. Metaworld's benchmark classes take their tasks from
# metaworld.env_dict.MT10_V3 / MT50_V3 (= ALL_V3_ENVIRONMENTS); copied here, in the same order, so that
# listing them needs no simulator import. tests/test_sim_registry.py checks they still agree.
_MT10_TASKS = (
    "reach",
    "push",
    "pick-place",
    "door-open",
    "drawer-open",
    "drawer-close",
    "button-press-topdown",
    "peg-insert-side",
    "window-open",
    "window-close",
)
TASK_SETS: dict[str, tuple[str, ...]] = {
    "metaworld/MT10": tuple(f"metaworld/{task}-v3" for task in _MT10_TASKS),
    "metaworld/MT50": tuple(f"metaworld/{task}-v3" for task in METAWORLD_INSTRUCTIONS),
}


# Poses of the `corner2` camera (position only; the orientation stays Metaworld's euler (3.9, 2.3, 0.6)).
# Metaworld's own pose is far from the table, so a 64 px image shows it small; LeRobot moves the camera to
# (0.75, 0.075, 0.7) (lerobot/envs/metaworld.py), DP3 to (0.6, 0.295, 0.8) (architecture.md
# §Rendering). Default: LeRobot's, the table fills the frame with the whole arm in view, and datasets
# converted from LeRobot's Metaworld data see the same view as ours.
CORNER2_POSES: dict[str, tuple[float, float, float]] = {
    "lerobot": (0.75, 0.075, 0.7),
    "dp3": (0.6, 0.295, 0.8),
    "metaworld": (1.3, -0.2, 1.1),
}
DEFAULT_CORNER2_POSE = "lerobot"


def check_camera_pose(env_id: str, pose: str | None) -> str | None:
    """The corner2 pose to build `env_id` (an env or a task set: each of its envs) with (None: the env's
    default); one error naming a bad one."""
    if pose is None:
        return None
    for one in expand_env_id(env_id):
        if get_spec(one).suite != "metaworld":
            raise InvalidInputError(f"camera pose applies to Metaworld's corner2 camera only, not to {one}")
    if pose not in CORNER2_POSES:
        raise InvalidInputError(f"unknown camera pose {pose!r}. Valid: {', '.join(CORNER2_POSES)}")
    return pose


def camera_pose_of(facts: Mapping[str, Any]) -> str | None:
    """The corner2 pose (`sim.make_env`'s camera_pose) recorded in a store's or checkpoint's camera_info."""
    info = facts.get("camera_info")
    camera = info.get("corner2") if isinstance(info, Mapping) else None
    pose = camera.get("pose_preset") if isinstance(camera, Mapping) else None
    return pose if isinstance(pose, str) else None


def list_env_ids(suite: str | None = None) -> list[str]:
    """Every single-task env id (optionally of one suite), in registry order."""
    return [env_id for env_id, spec in REGISTRY.items() if suite is None or spec.suite == suite]


def _unknown_id_message(env_id: str) -> str:
    return (
        f"unknown env id {env_id!r}. Valid ids: {', '.join(REGISTRY)}. "
        f"Task sets (expand with expand_env_id): {', '.join(TASK_SETS)}"
    )


def get_spec(env_id: str) -> EnvSpec:
    """The registry entry of a single-task id; ValueError listing the valid ids otherwise."""
    try:
        return REGISTRY[env_id]
    except KeyError:
        raise InvalidInputError(_unknown_id_message(env_id)) from None


def expand_env_id(env_id: str) -> list[str]:
    """A task set ("metaworld/MT10") -> its single-task ids; a single-task id -> [env_id]; a
    comma-separated list of ids or sets -> all of their tasks, in order, without repeats."""
    if "," in env_id:
        return list(
            dict.fromkeys(t for part in env_id.split(",") if part for t in expand_env_id(part.strip()))
        )
    if env_id in TASK_SETS:
        return list(TASK_SETS[env_id])
    if env_id in REGISTRY:
        return [env_id]
    raise InvalidInputError(_unknown_id_message(env_id))
