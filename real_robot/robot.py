"""The hardware abstraction: a `Robot` with LeRobot's method names (architecture.md §Robots), and the
mapping between a robot's features and a policy's inputs and actions.

A robot describes itself with LeRobot-style feature dicts: `observation_features` maps a name to `float`
(one scalar, e.g. a joint position "shoulder_pan.pos") or to a shape tuple (an array: a camera frame
(H, W, 3), or a vector); `action_features` maps action names to `float`. `get_observation()` returns a
dict with those names; `send_action(action)` takes one and returns what was actually sent.

`FeatureMap` turns an observation into the policy's keys (`observation.state`: the scalar features in
order, or an array feature of that name; `observation.images.<camera>`: the (H, W, 3) features) and a
policy's action vector into the robot's action dict, after checking once that they fit.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.keys import IMAGE_PREFIX, camera_of

STATE_KEY = "observation.state"


class Robot(ABC):
    """A robot as the deploy runtime drives it. Method names follow LeRobot's `Robot`."""

    name: str = "robot"

    @property
    @abstractmethod
    def observation_features(self) -> dict[str, Any]: ...

    @property
    @abstractmethod
    def action_features(self) -> dict[str, Any]: ...

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def get_observation(self) -> dict[str, Any]: ...

    @abstractmethod
    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        """Command `action`; returns the action actually sent (after the robot's own clipping)."""

    @abstractmethod
    def disconnect(self) -> None: ...

    # Facts the deploy runtime needs beyond LeRobot's interface; robots override what they know.
    action_semantics: str = ""
    """What an action means (the env registry's words for simulated robots)."""

    def hold_action(self, observation: dict[str, Any]) -> dict[str, float]:
        """The action that keeps the robot where it is (default: every action feature 0, right for delta
        actions; absolute-position robots return their current positions)."""
        return dict.fromkeys(self.action_features, 0.0)


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy reads and writes, from its config or from a policy server's metadata."""

    state_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    input_shapes: dict[str, list[int]]
    action_dim: int

    @classmethod
    def from_metadata(cls, meta: Any) -> PolicyInputs:
        shapes = {k: list(v["shape"][1:]) for k, v in meta.inputs.items()}
        images = tuple(k for k, v in meta.inputs.items() if v["dtype"] == "uint8")
        return cls(tuple(k for k in meta.inputs if k not in images), images, shapes, meta.action_dim)


@dataclass(frozen=True)
class FeatureMap:
    """Robot features <-> policy keys, checked against a checkpoint once, before anything moves."""

    state_names: tuple[str, ...]
    """Scalar observation features concatenated into `observation.state`, in order; () when the robot
    has an array feature named `observation.state`."""
    arrays: tuple[str, ...]
    """Low-dim keys the robot gives as arrays under the policy's own name (simulated robots)."""
    cameras: dict[str, str]
    """Policy image key -> robot feature name."""
    action_names: tuple[str, ...]

    @classmethod
    def match(cls, robot: Robot, config: Any, action_semantics: str = "") -> FeatureMap:
        """The map for a policy `config` on `robot`; one error naming the key otherwise."""
        obs = robot.observation_features
        scalars = tuple(k for k, v in obs.items() if v is float)
        state_names = () if STATE_KEY in obs else scalars
        for key in config.state_keys:
            want = list(config.input_shapes[key])
            if key == STATE_KEY and not state_names and STATE_KEY in obs:
                have = list(obs[STATE_KEY])
            elif key == STATE_KEY:
                have = [len(scalars)]
            else:
                have = list(obs[key]) if key in obs else None
            if have is None or math.prod(have) != math.prod(want):
                raise InvalidInputError(
                    f"the policy needs '{key}' of shape {want}; robot {robot.name} gives "
                    f"{have if have is not None else 'no such feature'} (features: {sorted(obs)[:12]})"
                )
        cameras = {}
        for key in config.image_keys:
            name = next((n for n in (camera_of(key), key) if n in obs), None)
            want = list(config.input_shapes[key])
            if name is None:
                raise InvalidInputError(
                    f"the policy needs camera '{key}'; robot {robot.name} has {_cameras(obs)}"
                )
            if list(obs[name]) != want:
                raise InvalidInputError(
                    f"camera '{key}': the policy was trained on {want}, robot {robot.name} gives {list(obs[name])}"
                )
            cameras[key] = name
        actions = tuple(robot.action_features)
        if len(actions) != config.action_dim:
            raise InvalidInputError(
                f"the policy outputs {config.action_dim} actions; robot {robot.name} takes {len(actions)}: {list(actions)}"
            )
        if action_semantics and robot.action_semantics and action_semantics != robot.action_semantics:
            raise InvalidInputError(
                f"action semantics differ: the policy was trained on {action_semantics!r}, robot {robot.name} "
                f"takes {robot.action_semantics!r}"
            )
        arrays = tuple(k for k in config.state_keys if not (k == STATE_KEY and state_names))
        return cls(state_names, arrays, cameras, actions)

    @classmethod
    def of_robot(cls, robot: Robot) -> FeatureMap:
        """Everything the robot observes, under the policy keys: what `visuomotor record` stores (the
        scalars as `observation.state`, each camera as `observation.images.<camera>`)."""
        obs = robot.observation_features
        cameras = {f"{IMAGE_PREFIX}{name}": name for name in _cameras(obs)}
        state_names = () if STATE_KEY in obs else tuple(k for k, v in obs.items() if v is float)
        arrays = tuple(k for k, v in obs.items() if v is not float and k not in cameras.values())
        return cls(state_names, arrays, cameras, tuple(robot.action_features))

    def policy_observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        """One robot observation -> the policy's frame (key -> array without batch or time axes)."""
        out: dict[str, np.ndarray] = {}
        if self.state_names:
            out[STATE_KEY] = np.array([float(observation[n]) for n in self.state_names], np.float32)
        for key in self.arrays:
            out[key] = np.asarray(observation[key], np.float32)
        for key, name in self.cameras.items():
            out[key] = np.asarray(observation[name], np.uint8)
        return out

    def robot_action(self, action: np.ndarray) -> dict[str, float]:
        return {
            name: float(v) for name, v in zip(self.action_names, np.asarray(action).reshape(-1), strict=True)
        }

    def action_vector(self, action: dict[str, float]) -> np.ndarray:
        return np.array([action[n] for n in self.action_names], np.float64)  # exact bounds checks


def _cameras(features: dict[str, Any]) -> list[str]:
    return [k for k, v in features.items() if isinstance(v, tuple) and len(v) == 3]
