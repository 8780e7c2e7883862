"""Scripted experts: Metaworld's own scripted policies, and pick-and-place state machines for robosuite.

    expert = make_expert(env); expert.reset(); action = expert.act(obs)

The robosuite experts read privileged object poses (robosuite's observation dict) and drive the Panda's
OSC_POSE controller with delta actions: position deltas are scaled to the controller's 5 cm per step, rotation
deltas (axis-angle in the base frame, which is the world frame for these single-arm tasks) to 0.5 rad.
"""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from visuomotor.errors import InvalidInputError

# OSC_POSE output limits of the Panda's default controller (robosuite/controllers/config/robots/
# default_panda.json): an action of 1 moves the goal 5 cm / 0.5 rad.
_OSC_MAX_POS = 0.05
_OSC_MAX_ROT = 0.5
_GRIPPER_OPEN, _GRIPPER_CLOSE = -1.0, 1.0
# The Panda's end effector pointing straight down with its fingers closing along the world y axis: the
# orientation robosuite resets it to, up to the initialisation noise.
_R_DOWN = np.diag([1.0, -1.0, -1.0])


class Expert(abc.ABC):
    """A scripted policy for one env: `reset()` at each episode start, then `act(obs)` every step."""

    def reset(self) -> None:  # noqa: B027  (stateless experts need nothing here)
        """Forget the previous episode."""

    @abc.abstractmethod
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action for `obs` (an observation dict, architecture.md §Conventions): float32, inside the
        env's action space."""


class MetaworldExpert(Expert):
    """Metaworld's scripted policy for the task (metaworld.policies), fed the 39-d observation."""

    def __init__(self, task_name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self._policy = ENV_POLICY_MAP[task_name]()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = np.asarray(obs["observation.environment_state"], dtype=np.float64)
        with warnings.catch_warnings():
            # The policies' high proportional gains trigger "Constant(s) may be too high" on most steps;
            # the env clips anyway, and so do we below.
            warnings.simplefilter("ignore", UserWarning)
            action = self._policy.get_action(state)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


# -- robosuite -----------------------------------------------------------------------------------------


def _quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _axis_angle(rot: np.ndarray) -> np.ndarray:
    """The rotation vector (axis * angle) of a rotation matrix."""
    angle = np.arccos(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    if np.pi - angle < 1e-3:  # near 180 degrees the skew part vanishes; use the diagonal instead
        axis = np.sqrt(np.clip((np.diag(rot) + 1.0) / 2.0, 0.0, None))
        return axis / np.linalg.norm(axis) * angle
    return axis / np.linalg.norm(axis) * angle


def _grasp_yaw(object_quat_xyzw: np.ndarray, symmetry: float) -> float:
    """The gripper yaw that lines the fingers up with an object's faces, within +-symmetry/2 of neutral.

    A cube looks the same every 90 degrees about z, so there is always a grasp yaw within 45 degrees of the
    reset orientation, which keeps the wrist far from its joint limits.
    """
    rot = _quat_xyzw_to_mat(object_quat_xyzw)
    yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
    return float((yaw + symmetry / 2) % symmetry - symmetry / 2)


@dataclass
class _Targets:
    """One step's command: where the end effector should go, its yaw, and the gripper."""

    pos: np.ndarray
    yaw: float
    gripper: float


class _OscExpert(Expert):
    """Turns per-step targets into OSC_POSE delta actions; subclasses are phase machines giving targets."""

    # Proportional gains on the error (in units of the controller's per-step limit). Above 1 so the goal
    # leads the arm enough to overcome the controller's lag and gravity sag; the clip keeps steps bounded.
    pos_gain = 2.0
    rot_gain = 1.5

    def __init__(self, env: gym.Env) -> None:
        self._env = env
        self.reset()

    def reset(self) -> None:
        self.phase = 0
        self._phase_steps = 0  # steps spent in the current phase
        self._yaw = 0.0  # gripper yaw of the grasp, kept after it
        self._hold: np.ndarray | None = None  # a fixed position target, set when a phase starts

    def _next_phase(self) -> None:
        self.phase += 1
        self._phase_steps = 0
        self._hold = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["observation.state"]  # eef pos 3, eef quat xyzw 4, finger qpos 2
        eef_pos, eef_rot = state[:3].astype(np.float64), _quat_xyzw_to_mat(state[3:7])
        targets = self._targets(eef_pos, self._env.privileged_observation)
        self._phase_steps += 1
        action = np.zeros(7)
        action[:3] = self.pos_gain * (targets.pos - eef_pos) / _OSC_MAX_POS
        target_rot = _rot_z(targets.yaw) @ _R_DOWN
        action[3:6] = self.rot_gain * _axis_angle(target_rot @ eef_rot.T) / _OSC_MAX_ROT
        action[6] = targets.gripper
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @abc.abstractmethod
    def _targets(self, eef_pos: np.ndarray, priv: dict[str, np.ndarray]) -> _Targets:
        """The command for this step; may advance `self.phase`."""

    # Shared phases of a top-down grasp ------------------------------------------------------------------

    def _grasp(self, eef_pos: np.ndarray, obj_pos: np.ndarray, yaw: float) -> _Targets:
        """Phases 0-2: hover over the object, descend, close; call while `self.phase <= 2`.

        The grasp point is the object's centre: robosuite's eef position is the point between the fingertips.
        """
        hover = obj_pos + np.array([0.0, 0.0, 0.08])
        grasp = obj_pos
        if self.phase == 0:  # above the object, fingers open and turned to the object's faces
            if np.linalg.norm(eef_pos[:2] - hover[:2]) < 0.01 and abs(eef_pos[2] - hover[2]) < 0.02:
                self._next_phase()
            return _Targets(hover, yaw, _GRIPPER_OPEN)
        if self.phase == 1:  # straight down
            if np.linalg.norm(eef_pos - grasp) < 0.008 or self._phase_steps > 40:
                self._next_phase()
            return _Targets(grasp, yaw, _GRIPPER_OPEN)
        # phase 2: close and wait for the fingers (they take ~0.4 s)
        if self._phase_steps >= 8:
            self._next_phase()
        return _Targets(grasp, yaw, _GRIPPER_CLOSE)


class LiftExpert(_OscExpert):
    """robosuite Lift: grasp the cube from the top and lift it 20 cm."""

    def _targets(self, eef_pos: np.ndarray, priv: dict[str, np.ndarray]) -> _Targets:
        if self.phase <= 2:
            self._yaw = _grasp_yaw(priv["cube_quat"], np.pi / 2)
            return self._grasp(eef_pos, priv["cube_pos"], self._yaw)
        if self._hold is None:  # fixed once, or the target would rise with the cube
            self._hold = eef_pos + np.array([0.0, 0.0, 0.2])
        return _Targets(self._hold, self._yaw, _GRIPPER_CLOSE)


class _PlaceExpert(_OscExpert):
    """Grasp an object, carry it over a place target, lower it there, let go and back off.

    Subclasses say what the object and the place target are. Targets for the carried object are turned into
    end-effector targets through the grasp offset (eef - object), measured at every step.
    """

    yaw_symmetry = np.pi / 2
    place_tolerance = 0.008  # m: how close to the place target the object must come before the next phase

    @abc.abstractmethod
    def _object(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The carried object's position and quaternion (x, y, z, w)."""

    @abc.abstractmethod
    def _place(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Where the object's centre goes when it is set down, and the height to carry it at."""

    def _targets(self, eef_pos: np.ndarray, priv: dict[str, np.ndarray]) -> _Targets:
        obj_pos, obj_quat = self._object(priv)
        if self.phase <= 2:
            self._yaw = _grasp_yaw(obj_quat, self.yaw_symmetry)
            return self._grasp(eef_pos, obj_pos, self._yaw)
        offset = eef_pos - obj_pos
        place, carry_z = self._place(priv)
        if self.phase == 3:  # straight up to the carrying height
            target = np.array([obj_pos[0], obj_pos[1], carry_z])
            if obj_pos[2] > carry_z - 0.02 or self._phase_steps > 40:
                self._next_phase()
            return _Targets(target + offset, self._yaw, _GRIPPER_CLOSE)
        if self.phase == 4:  # across, over the place target
            target = np.array([place[0], place[1], carry_z])
            if np.linalg.norm(obj_pos[:2] - place[:2]) < self.place_tolerance or self._phase_steps > 60:
                self._next_phase()
            return _Targets(target + offset, self._yaw, _GRIPPER_CLOSE)
        if self.phase == 5:  # down onto it
            if np.linalg.norm(obj_pos - place) < self.place_tolerance or self._phase_steps > 40:
                self._next_phase()
            return _Targets(place + offset, self._yaw, _GRIPPER_CLOSE)
        if self.phase == 6:  # let go, holding still
            if self._hold is None:
                self._hold = eef_pos.copy()
            hold = self._hold
            if self._phase_steps >= 6:
                self._next_phase()
            return _Targets(hold, self._yaw, _GRIPPER_OPEN)
        # phase 7: back off upwards (Stack and PickPlace count success only once the gripper lets go)
        if self._hold is None:
            self._hold = eef_pos + np.array([0.0, 0.0, 0.1])
        return _Targets(self._hold, self._yaw, _GRIPPER_OPEN)


class StackExpert(_PlaceExpert):
    """robosuite Stack: put cube A (red) on cube B (green)."""

    def _object(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return priv["cubeA_pos"], priv["cubeA_quat"]

    def _place(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        raw = self._env.raw_env
        half_a, half_b = float(raw.cubeA.size[2]), float(raw.cubeB.size[2])
        # Centre of A resting on B, plus 5 mm so A is set down rather than pushed into B.
        on_top = priv["cubeB_pos"] + np.array([0.0, 0.0, half_b + half_a + 0.005])
        return on_top, on_top[2] + 0.05


class PickPlaceCanExpert(_PlaceExpert):
    """robosuite PickPlaceCan: move the can from the left bin to its quarter of the right bin."""

    yaw_symmetry = 2 * np.pi  # a can is round: no yaw to match, stay at the neutral one
    place_tolerance = 0.02  # its target is a quarter of the bin; no need to be precise

    def _object(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return priv["Can_pos"], np.array([0.0, 0.0, 0.0, 1.0])

    def _place(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        raw = self._env.raw_env
        # Success means the can's centre is inside its quarter of the goal bin (PickPlace.not_in_bin). The
        # quarter's centre (target_bin_placements) is at the edge of the Panda's reach, where OSC stalls;
        # aim 5-6 cm inside the quarter's corner nearest the robot instead.
        bin_id = raw.object_to_id["can"]
        x_low = raw.bin2_pos[0] - (raw.bin_size[0] / 2 if bin_id in (0, 2) else 0.0)
        y_low = raw.bin2_pos[1] - (raw.bin_size[1] / 2 if bin_id < 2 else 0.0)
        # Lower it into the bin (centre 10 cm above the bin's base, a few cm above where it will rest), drop
        # it, and carry it high enough to clear the bin walls.
        place = np.array([x_low + 0.05, y_low + 0.06, raw.bin2_pos[2] + 0.1])
        return place, raw.bin2_pos[2] + 0.2


def make_expert(env: gym.Env) -> Expert:
    """The scripted expert for an env built by `visuomotor.sim.make_env`."""
    base: Any = env.unwrapped
    spec = getattr(base, "env_spec", None)
    if spec is None:
        raise TypeError(f"make_expert needs an env from visuomotor.sim.make_env, got {type(base).__name__}")
    if spec.suite == "metaworld":
        return MetaworldExpert(spec.task_name)
    experts: dict[str, type[_OscExpert]] = {
        "Lift": LiftExpert,
        "Stack": StackExpert,
        "PickPlaceCan": PickPlaceCanExpert,
    }
    if spec.task_name not in experts:
        raise InvalidInputError(f"no scripted expert for {spec.env_id}; experts exist for {sorted(experts)}")
    return experts[spec.task_name](base)
