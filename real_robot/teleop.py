"""Teleoperators for recording demonstrations (architecture.md §Robots): a leader arm, keyboard or
gamepad that LeRobot drives, named on the command line like robots:

    lerobot:<type>      any teleoperator LeRobot ships or a plugin registers, e.g. lerobot:so101_leader

A teleoperator's `get_action()` is a dict with the robot's action names (a leader arm's joint targets for
its follower); `TeleopSource` feeds it to the same control loop, safety layer and watchdog as a policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.real_robot.robot import FeatureMap, Robot


class Teleoperator(ABC):
    """A teleoperation device. Method names follow LeRobot's `Teleoperator`."""

    name: str = "teleop"

    @property
    @abstractmethod
    def action_features(self) -> dict[str, Any]: ...

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def get_action(self) -> dict[str, float]: ...

    @abstractmethod
    def disconnect(self) -> None: ...


class LeRobotTeleop(Teleoperator):
    """A LeRobot teleoperator behind visuomotor's `Teleoperator`."""

    def __init__(
        self, teleop_type: str, *, port: str | None = None, teleop_id: str | None = None,
        calibration_dir: str | None = None,
    ) -> None:  # fmt: skip
        from lerobot.teleoperators import make_teleoperator_from_config

        from visuomotor.real_robot.lerobot_robot import lerobot_config

        fields = {"port": port, "id": teleop_id}
        fields["calibration_dir"] = Path(calibration_dir) if calibration_dir else None
        self.config = lerobot_config(teleop_type, "teleoperators", **fields)
        self.name = f"lerobot:{teleop_type}"
        self.device = make_teleoperator_from_config(self.config)

    @property
    def action_features(self) -> dict[str, Any]:
        return dict(self.device.action_features)

    @property
    def is_connected(self) -> bool:
        return bool(self.device.is_connected)

    def connect(self) -> None:
        if not self.device.is_calibrated:
            raise InvalidInputError(
                f"teleoperator {self.name} (id {self.config.id!r}) has no calibration; calibrate it first "
                "with `lerobot-calibrate`"
            )
        self.device.connect(calibrate=False)

    def get_action(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.device.get_action().items()}

    def disconnect(self) -> None:
        if self.device.is_connected:
            self.device.disconnect()


def make_teleop(uri: str, *, port: str | None = None, teleop_id: str | None = None) -> Teleoperator:
    kind, sep, rest = uri.partition(":")
    if kind != "lerobot" or not sep or not rest:
        raise InvalidInputError(
            f"unknown teleoperator {uri!r}: use lerobot:<type>, e.g. lerobot:so101_leader"
        )
    return LeRobotTeleop(rest, port=port, teleop_id=teleop_id)


def check_teleop(teleop: Teleoperator, robot: Robot) -> None:
    """The teleoperator must give exactly the robot's actions; one error naming the keys otherwise."""
    have, want = set(teleop.action_features), set(robot.action_features)
    if have != want:
        raise InvalidInputError(
            f"teleoperator {teleop.name} gives actions {sorted(have)}, robot {robot.name} takes {sorted(want)}: "
            f"missing {sorted(want - have)}, unexpected {sorted(have - want)}"
        )


class TeleopSource:
    """The control loop's actions from a teleoperator, read once per tick."""

    def __init__(self, teleop: Teleoperator, fmap: FeatureMap) -> None:
        self.teleop, self.fmap = teleop, fmap

    def begin(self) -> None:
        pass

    def planned(self, tick: int, frame: dict[str, np.ndarray], stale: bool) -> np.ndarray | None:
        return self.fmap.action_vector(self.teleop.get_action())

    def end(self) -> None:
        pass
