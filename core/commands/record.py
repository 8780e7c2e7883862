"""Record demonstrations on a robot from a LeRobot teleoperator (a leader arm, keyboard or gamepad) into
an episode store, through the same control loop, safety layer and watchdog as `deploy`. On a real arm,
keys start, end and re-record episodes (Enter / r / Esc); between episodes the teleoperator still moves
the arm, unrecorded, so the scene can be reset. Each episode is committed when it ends: a crash or kill
loses at most the episode in progress."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from visuomotor.commands.deploy import check_episode_end, safety_and_config, stop_on_interrupt
from visuomotor.errors import InvalidInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", required=True, help="robot URI, e.g. lerobot:so101_follower")
    parser.add_argument("--robot-port", help="lerobot robots: the serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--robot-id", help="lerobot robots: the calibration id")
    parser.add_argument("--teleop", required=True, help="teleoperator URI, e.g. lerobot:so101_leader")
    parser.add_argument("--teleop-port", help="the teleoperator's serial port, e.g. /dev/ttyACM1")
    parser.add_argument("--teleop-id", help="the teleoperator's calibration id")
    parser.add_argument("--out", required=True, help="episode store to create or append to")
    parser.add_argument("--task", default="", help="the task's instruction, stored with every episode")
    parser.add_argument("--fps", type=float, default=30.0, help="control and recording rate (default 30)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to record (default 1)")
    parser.add_argument("--max-steps", type=int, help="end an episode after this many steps")
    parser.add_argument("--safety", metavar="FILE", help="safety limits (JSON); default: the robot's own")


def run(args: argparse.Namespace) -> int:
    from visuomotor.real_robot import make_robot
    from visuomotor.real_robot.controls import Controls, keyboard
    from visuomotor.real_robot.recording import append_episode
    from visuomotor.real_robot.robot import FeatureMap
    from visuomotor.real_robot.runtime import hold_and_disconnect, run_episodes
    from visuomotor.real_robot.teleop import TeleopSource, check_teleop, make_teleop

    if args.episodes < 1 or args.fps <= 0:
        raise InvalidInputError(f"--episodes must be >= 1 and --fps > 0, got {args.episodes} and {args.fps}")
    teleop = make_teleop(args.teleop, port=args.teleop_port, teleop_id=args.teleop_id)
    robot = make_robot(
        args.robot, port=args.robot_port, robot_id=args.robot_id, max_episode_steps=args.max_steps
    )
    check_teleop(teleop, robot)  # before anything connects or moves
    teleop.connect()
    robot.connect()
    controls = stop_on_interrupt(Controls())
    recorded: list[dict[str, Any]] = []
    try:
        fmap = FeatureMap.of_robot(robot)
        safety, cfg = safety_and_config(robot, args, n_obs_steps=1)
        source = TeleopSource(teleop, fmap)

        def keep(index: int, log: Any) -> None:
            meta = {"success": bool(getattr(robot, "success", False)), "teleop": teleop.name}
            if append_episode(args.out, robot, log, safety.limits, cfg.task or "", args.fps, meta):
                recorded.append({"episode": index, "steps": len(log.actions), "holds": log.holds})
                print(f"episode {index + 1}: {len(log.actions)} steps saved to {args.out}", file=sys.stderr)

        with keyboard(controls) as keys:
            check_episode_end(robot, keys, args.max_steps)
            run_episodes(
                robot,
                fmap,
                source,
                safety,
                cfg,
                controls,
                args.episodes,
                keys=keys,
                between=source,
                keep=keep,
            )
    finally:
        hold_and_disconnect(robot, dry_run=False)
        teleop.disconnect()
    print(json.dumps({"store": args.out, "episodes": recorded, "safety": safety.counts}, indent=2))
    return 0
