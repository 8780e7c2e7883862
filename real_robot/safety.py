"""The safety layer between every policy output and every command sent (architecture.md §Robots).

Rules, applied in this order to each action (a vector in the robot's action order):
1. `non_finite`: NaN or infinity anywhere -> the action is rejected (the runtime holds instead).
2. `limits`: each value clipped to [low, high] of its action feature.
3. `max_step`: each value's change from the previous command clipped to +-max_step (LeRobot's
   `max_relative_target`); the first command of an episode is bounded against the hold action.
4. `workspace`: when an observed position (e.g. the hand's x, y, z) is outside the box and the action's
   matching component would move it farther out, that component is set to what holds it.
A hold (the robot's stay-where-you-are action) is not an output of the policy and is sent as it is.
Every clip and rejection is counted by rule and logged. Limits come from the robot (its action space) or
a safety file (JSON), which is checked for impossible values before anything moves.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError

log = logging.getLogger(__name__)

RULES = ("non_finite", "limits", "max_step", "workspace")


@dataclass(frozen=True)
class Workspace:
    position: tuple[str, ...]
    """Observation features (scalars) or one array feature and indices, as 'key[i]' names."""
    action: tuple[str, ...]
    """The action features that move each position coordinate (positive = increasing)."""
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class SafetyLimits:
    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    max_step: np.ndarray
    """Largest change per control step of each action value; inf = unbounded."""
    workspace: Workspace | None = None

    def __post_init__(self) -> None:
        n = len(self.names)
        for what, arr in (("low", self.low), ("high", self.high), ("max_step", self.max_step)):
            if arr.shape != (n,):
                raise InvalidInputError(
                    f"safety limits: '{what}' needs {n} values (one per action {list(self.names)}), got {arr.shape}"
                )
        bad = [
            self.names[i]
            for i in range(n)
            if not (np.isfinite(self.low[i]) and np.isfinite(self.high[i]) and self.low[i] <= self.high[i])
        ]
        if bad:
            raise InvalidInputError(f"safety limits: low must be <= high and both finite, not for {bad}")
        if (self.max_step <= 0).any() or np.isnan(self.max_step).any():
            raise InvalidInputError(f"safety limits: max_step must be > 0, got {self.max_step.tolist()}")
        ws = self.workspace
        if ws is not None:
            if not (len(ws.position) == len(ws.action) == len(ws.low) == len(ws.high)):
                raise InvalidInputError(
                    "safety workspace: position, action, low and high need one entry per axis"
                )
            if any(a not in self.names for a in ws.action):
                raise InvalidInputError(
                    f"safety workspace: actions {list(ws.action)} must be among {list(self.names)}"
                )
            if any(not lo < hi for lo, hi in zip(ws.low, ws.high, strict=True)):
                raise InvalidInputError(f"safety workspace: low must be < high, got {ws.low} and {ws.high}")

    @classmethod
    def from_file(cls, path: str | Path, names: tuple[str, ...]) -> SafetyLimits:
        """A safety file: {"low": {name: v}, "high": {...}, "max_step": {...}, "workspace": {...}}; names
        not listed keep no bound (low/high must be given for every action)."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InvalidInputError(f"safety file {path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"safety file {path}: invalid JSON: {exc}") from None
        try:
            low = np.array([float(doc["low"][n]) for n in names])
            high = np.array([float(doc["high"][n]) for n in names])
            steps = doc.get("max_step", {})
            max_step = np.array([float(steps.get(n, math.inf)) for n in names])
            ws = doc.get("workspace")
            workspace = Workspace(**{k: tuple(v) for k, v in ws.items()}) if ws else None
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"safety file {path}: {exc!r} (every action needs low and high: {list(names)})"
            ) from None
        try:
            return cls(names, low, high, max_step, workspace)
        except InvalidInputError as exc:
            raise InvalidInputError(f"safety file {path}: {exc}") from None


@dataclass
class SafetyLayer:
    limits: SafetyLimits
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))

    def check(
        self, action: np.ndarray, previous: np.ndarray, observation: dict[str, Any]
    ) -> tuple[np.ndarray | None, list[str]]:
        """(the action to send or None to hold, the rules that fired)."""
        lim = self.limits
        a = np.asarray(action, np.float64).reshape(-1)
        if a.shape != lim.low.shape or not np.isfinite(a).all():
            return self._fired(None, ["non_finite"])
        fired = []
        clipped = np.clip(a, lim.low, lim.high)
        if not np.array_equal(clipped, a):
            fired.append("limits")
        stepped = np.clip(clipped, previous - lim.max_step, previous + lim.max_step)
        if not np.array_equal(stepped, clipped):
            fired.append("max_step")
        bounded = self._workspace(stepped, previous, observation)
        if not np.array_equal(bounded, stepped):
            fired.append("workspace")
        return self._fired(bounded, fired)

    def _workspace(self, a: np.ndarray, hold: np.ndarray, observation: dict[str, Any]) -> np.ndarray:
        ws = self.limits.workspace
        if ws is None:
            return a
        out = a.copy()
        for pos_name, act_name, lo, hi in zip(ws.position, ws.action, ws.low, ws.high, strict=True):
            x = _scalar(observation, pos_name)
            i = self.limits.names.index(act_name)
            if (x < lo and out[i] < 0) or (x > hi and out[i] > 0):
                out[i] = 0.0
        return out

    def _fired(self, action: np.ndarray | None, rules: list[str]) -> tuple[np.ndarray | None, list[str]]:
        for rule in rules:
            self.counts[rule] += 1
            log.debug("safety rule %s fired", rule)
        return action, rules


def _scalar(observation: dict[str, Any], name: str) -> float:
    """`name` or `key[i]` from an observation."""
    if name.endswith("]") and "[" in name:
        key, index = name[:-1].split("[")
        return float(np.asarray(observation[key]).reshape(-1)[int(index)])
    return float(observation[name])


def default_limits(robot: Any) -> SafetyLimits:
    """Limits from what the robot knows: a simulated robot's action space, its hand inside the table's
    reach (Metaworld), and at most half the range per step."""
    names = tuple(robot.action_features)
    space = getattr(getattr(robot, "_env", None), "action_space", None)
    if space is None:
        raise InvalidInputError(f"robot {robot.name} declares no action limits: give --safety FILE")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    workspace = None
    if getattr(robot, "env_id", "").startswith("metaworld/"):
        # Metaworld's hand_low / hand_high (sawyer_xyz_env.py), the hand xyz at state[0:3].
        workspace = Workspace(
            ("observation.state[0]", "observation.state[1]", "observation.state[2]"),
            names[:3],
            (-0.525, 0.348, -0.0525),
            (0.525, 1.025, 0.7),
        )
    return SafetyLimits(names, low, high, (high - low) / 2, workspace)
