"""`lerobot:<type>`: any robot LeRobot ships (SO-100/101, Koch, ...) or a plugin registers, built from
LeRobot's own config classes and driven through its `Robot` (architecture.md §Robots).

Calibration comes from LeRobot's calibration directory and the robot id, as with LeRobot's own tools;
the arm's position targets make the hold action "stay at the present position" (`<motor>.pos` read
from the observation). LeRobot's `max_relative_target` still applies inside the driver, after our
safety layer.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError
from visuomotor.real_robot.robot import Robot


def _register_lerobot(kind: str) -> None:
    """Import every robot (or teleoperator) package LeRobot ships, so their config classes register
    their type names; a package whose extra dependencies are missing is skipped (and named if asked for)."""
    package = importlib.import_module(f"lerobot.{kind}")
    for module in pkgutil.iter_modules(package.__path__):
        if module.ispkg:
            with contextlib.suppress(ImportError):
                importlib.import_module(f"lerobot.{kind}.{module.name}")


def lerobot_config(robot_type: str, kind: str = "robots", **fields: Any) -> Any:
    """LeRobot's config object of `robot_type` with `fields` (port, id, calibration_dir, cameras, ...);
    `kind` is "robots" or "teleoperators"."""
    if kind == "robots":
        from lerobot.robots import RobotConfig as config_base
    else:
        from lerobot.teleoperators import TeleoperatorConfig as config_base

    _register_lerobot(kind)
    what = "robot" if kind == "robots" else "teleoperator"
    try:
        config_cls = config_base.get_choice_class(robot_type)
    except KeyError:
        known = sorted(config_base.get_known_choices())
        raise InvalidInputError(
            f"unknown LeRobot {what} type {robot_type!r}; LeRobot knows {known} (a driver whose extras are "
            "not installed is missing from this list: pip install 'lerobot[<robot>]')"
        ) from None
    try:
        return config_cls(**{k: v for k, v in fields.items() if v is not None})
    except TypeError as exc:
        raise InvalidInputError(f"lerobot:{robot_type}: {exc}") from None


class LeRobotRobot(Robot):
    """A LeRobot robot behind visuomotor's `Robot` (the same method names, so this mostly forwards)."""

    def __init__(self, robot_type: str, *, port: str | None = None, robot_id: str | None = None,
                 calibration_dir: str | None = None, cameras: dict[str, Any] | None = None, **_ignored: Any) -> None:  # fmt: skip
        from lerobot.robots import make_robot_from_config

        fields = {"port": port, "id": robot_id, "cameras": cameras}
        fields["calibration_dir"] = Path(calibration_dir) if calibration_dir else None
        self.config = lerobot_config(robot_type, **fields)
        self.name = f"lerobot:{robot_type}"
        self.robot = make_robot_from_config(self.config)
        self.action_semantics = f"LeRobot {robot_type}: " + ", ".join(self.robot.action_features)

    @property
    def observation_features(self) -> dict[str, Any]:
        return dict(self.robot.observation_features)

    @property
    def action_features(self) -> dict[str, Any]:
        return dict(self.robot.action_features)

    @property
    def is_connected(self) -> bool:
        return bool(self.robot.is_connected)

    def connect(self) -> None:
        if not self.robot.is_calibrated:
            raise InvalidInputError(
                f"{self.name} (id {self.config.id!r}) has no calibration; calibrate it first with "
                "`lerobot-calibrate` (visuomotor never moves an uncalibrated arm)"
            )
        self.robot.connect(calibrate=False)

    def get_observation(self) -> dict[str, Any]:
        return dict(self.robot.get_observation())

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        return dict(self.robot.send_action(action))

    def disconnect(self) -> None:
        if self.robot.is_connected:
            self.robot.disconnect()

    def hold_action(self, observation: dict[str, Any]) -> dict[str, float]:
        """Position-controlled arms hold by targeting where they are."""
        if all(name in observation for name in self.action_features):
            return {name: float(observation[name]) for name in self.action_features}
        return super().hold_action(observation)
