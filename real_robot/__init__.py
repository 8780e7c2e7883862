"""Real robots: the hardware abstraction (`Robot`), simulated stand-ins, the safety layer, the deploy
runtime and remote inference (architecture.md §Robots, §Remote inference).

Robots are named on the command line by a URI-like string (explicit registry, no discovery):
    sim:<env-id>        any visuomotor env, e.g. sim:metaworld/reach-v3
    lerobot:<type>      any robot LeRobot ships or a plugin registers, e.g. lerobot:so101_follower
"""

from __future__ import annotations

from typing import Any

from visuomotor.errors import InvalidInputError

ROBOT_KINDS = ("sim", "lerobot")


def make_robot(uri: str, **options: Any) -> Any:
    """The robot a URI names (not yet connected); options go to its constructor."""
    kind, sep, rest = uri.partition(":")
    if not sep or not rest or kind not in ROBOT_KINDS:
        raise InvalidInputError(
            f"unknown robot {uri!r}: use one of {', '.join(f'{k}:<name>' for k in ROBOT_KINDS)}, e.g. sim:metaworld/reach-v3"
        )
    if kind == "lerobot":
        from visuomotor.real_robot.lerobot_robot import LeRobotRobot

        lerobot_options = ("port", "robot_id", "calibration_dir", "cameras")
        picked = {k: v for k, v in options.items() if k in lerobot_options and v is not None}
        if not isinstance(picked.get("cameras"), dict):  # LeRobot cameras are CameraConfig objects
            picked.pop("cameras", None)
        return LeRobotRobot(rest, **picked)
    from visuomotor.real_robot.sim_robot import SimRobot

    return SimRobot(rest, **options)
