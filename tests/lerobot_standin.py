"""A stand-in LeRobot robot: a LeRobot `Robot` subclass with its own registered config type, the way a
LeRobot plugin adds a robot, so visuomotor's `lerobot:<type>` adapter is tested without hardware.
Six motors' positions (like an SO-101) and one camera; it records every action it is sent. A stand-in
leader arm (a LeRobot `Teleoperator`) drives it for `visuomotor record`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lerobot.robots import Robot, RobotConfig
from lerobot.teleoperators import Teleoperator, TeleoperatorConfig

MOTORS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


@RobotConfig.register_subclass("standin_follower")
@dataclass(kw_only=True)
class StandInFollowerConfig(RobotConfig):
    port: str = "/dev/null"
    calibrated: bool = True
    camera_hw: tuple[int, int] = (8, 8)
    extra: dict[str, Any] = field(default_factory=dict)


class StandInFollower(Robot):
    config_class = StandInFollowerConfig
    name = "standin_follower"

    def __init__(self, config: StandInFollowerConfig) -> None:
        super().__init__(config)
        self.config = config
        self.connected = False
        self.positions = dict.fromkeys((f"{m}.pos" for m in MOTORS), 10.0)
        self.sent: list[dict[str, float]] = []

    @property
    def observation_features(self) -> dict:
        return {**dict.fromkeys(self.positions, float), "front": (*self.config.camera_hw, 3)}

    @property
    def action_features(self) -> dict:
        return dict.fromkeys(self.positions, float)

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self, calibrate: bool = True) -> None:
        self.connected = True

    @property
    def is_calibrated(self) -> bool:
        return self.config.calibrated

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict[str, Any]:
        frame = np.full((*self.config.camera_hw, 3), len(self.sent) % 256, np.uint8)
        return {**self.positions, "front": frame}

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(dict(action))
        self.positions.update({k: float(v) for k, v in action.items()})
        return dict(action)

    def disconnect(self) -> None:
        self.connected = False


@TeleoperatorConfig.register_subclass("standin_leader")
@dataclass(kw_only=True)
class StandInLeaderConfig(TeleoperatorConfig):
    port: str = "/dev/null"
    calibrated: bool = True


class StandInLeader(Teleoperator):
    """A leader arm for the stand-in follower: its joints move 0.5 per read, from 10."""

    config_class = StandInLeaderConfig
    name = "standin_leader"

    def __init__(self, config: StandInLeaderConfig) -> None:
        super().__init__(config)
        self.config = config
        self.connected = False
        self.reads = 0

    @property
    def action_features(self) -> dict:
        return dict.fromkeys((f"{m}.pos" for m in MOTORS), float)

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self, calibrate: bool = True) -> None:
        self.connected = True

    @property
    def is_calibrated(self) -> bool:
        return self.config.calibrated

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_action(self) -> dict[str, Any]:
        self.reads += 1
        return dict.fromkeys(self.action_features, 10.0 + 0.5 * self.reads)

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        pass

    def disconnect(self) -> None:
        self.connected = False
