"""Run a trained policy on a robot at a fixed rate, with the safety layer between every action and the
robot, and a watchdog that holds the robot on stale observations or a late policy. `--robot sim:<env-id>`
drives a simulated robot (episodes end on success or at the step limit, on the seeds `eval` uses);
`--server HOST:PORT` takes the actions from `visuomotor serve` instead of loading the policy here."""

from __future__ import annotations

import argparse
import json
import signal
import statistics
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="run or checkpoint directory to run in this process")
    src.add_argument(
        "--server", metavar="HOST:PORT", help="a policy server (visuomotor serve) to ask instead"
    )
    parser.add_argument("--token-file", help="bearer token for --server")
    parser.add_argument("--robot", required=True, help="robot URI, e.g. sim:metaworld/reach-v3")
    parser.add_argument("--robot-port", help="lerobot robots: the serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--robot-id", help="lerobot robots: the calibration id")
    parser.add_argument("--fps", type=float, default=10.0, help="control rate (default 10)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to run (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="everything but sending actions to the robot")
    parser.add_argument("--record", metavar="STORE", help="append each episode to this episode store")
    parser.add_argument("--safety", metavar="FILE", help="safety limits (JSON); default: the robot's own")
    parser.add_argument(
        "--blend", choices=["latest", "average"], default="latest", help="where chunks overlap"
    )
    parser.add_argument(
        "--max-steps", type=int, help="episode step limit (simulated robots: default the env's)"
    )
    parser.add_argument("--json", help="write the summary as JSON here")


def run(args: argparse.Namespace) -> int:
    from visuomotor.eval.rollout import EVAL_SEED_BASE
    from visuomotor.real_robot import make_robot
    from visuomotor.real_robot.controls import Controls, keyboard
    from visuomotor.real_robot.recording import append_episode
    from visuomotor.real_robot.robot import FeatureMap
    from visuomotor.real_robot.runtime import PolicySource, PolicyWorker, hold_and_disconnect, run_episodes

    if args.episodes < 1 or args.fps <= 0:
        raise InvalidInputError(f"--episodes must be >= 1 and --fps > 0, got {args.episodes} and {args.fps}")
    source = _policy_source(args)
    cameras = tuple(k.split(".")[-1] for k in source["inputs"].image_keys) or None
    robot = make_robot(
        args.robot,
        cameras=cameras,
        image_size=source["image_size"] or 64,
        camera_pose=source["camera_pose"],
        max_episode_steps=args.max_steps,
        port=args.robot_port,
        robot_id=args.robot_id,
    )
    robot.connect()
    controls = stop_on_interrupt(Controls())
    episodes: list[dict[str, Any]] = []
    try:
        fmap = FeatureMap.match(robot, source["inputs"], source["semantics"])  # before anything moves
        safety, cfg = safety_and_config(robot, args, source["n_obs_steps"])
        # A new chunk is asked for once n_action_steps of the last one are under way, as eval replans.
        cfg.refill_below = source["n_actions"] - source["n_action_steps"]
        worker = PolicyWorker(source["chunk_fn"])

        def keep(index: int, log: Any) -> None:
            episodes.append(_episode_summary(robot, log, index, EVAL_SEED_BASE))
            if args.record:
                meta = {
                    "success": bool(getattr(robot, "success", False)),
                    "policy": args.checkpoint or args.server,
                }
                append_episode(args.record, robot, log, safety.limits, cfg.task or "", args.fps, meta)

        with keyboard(controls) as keys:
            check_episode_end(robot, keys, args.max_steps)
            run_episodes(
                robot, fmap, PolicySource(worker, cfg), safety, cfg, controls, args.episodes,
                keys=keys, first_seed=EVAL_SEED_BASE, keep=keep,
            )  # fmt: skip
    finally:
        hold_and_disconnect(robot, args.dry_run)
    summary = _summary(args, episodes, safety.counts, worker.failures)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def safety_and_config(robot: Any, args: argparse.Namespace, n_obs_steps: int) -> tuple[Any, Any]:
    """The safety layer (from --safety or the robot's own limits) and the loop's settings (shared by
    `deploy` and `record`)."""
    from visuomotor.real_robot.runtime import DeployConfig
    from visuomotor.real_robot.safety import SafetyLayer, SafetyLimits, default_limits

    names = tuple(robot.action_features)
    limits = SafetyLimits.from_file(args.safety, names) if args.safety else default_limits(robot)
    task = getattr(getattr(robot, "spec", None), "instruction", None)
    cfg = DeployConfig(
        fps=args.fps,
        n_obs_steps=n_obs_steps,
        blend=getattr(args, "blend", "latest"),
        dry_run=getattr(args, "dry_run", False),
        task=getattr(args, "task", None) or task,
    )
    # Simulated robots end episodes themselves, at the latest at their env's step limit (a dry run too).
    cfg.max_ticks = args.max_steps or getattr(getattr(robot, "_env", None), "max_episode_steps", None)
    return SafetyLayer(limits), cfg


def check_episode_end(robot: Any, keys: bool, max_steps: int | None) -> None:
    """A real robot's episode ends on a key or at --max-steps: without a terminal it needs --max-steps."""
    if not hasattr(robot, "start_episode") and not keys and max_steps is None:
        raise InvalidInputError(
            f"{robot.name}: without a terminal there are no keys to end an episode; give --max-steps"
        )


def _policy_source(args: argparse.Namespace) -> dict[str, Any]:
    """How to get action chunks, and what the policy reads: in-process from --checkpoint or from --server."""
    from visuomotor.real_robot.robot import PolicyInputs
    from visuomotor.sim.registry import camera_pose_of

    if args.server:
        from visuomotor.real_robot.remote import PolicyClient
        from visuomotor.real_robot.remote.server import read_token

        client = PolicyClient(args.server, token=read_token(args.token_file))
        meta = client.metadata
        inputs = PolicyInputs.from_metadata(meta)
        return {
            "inputs": inputs,
            "chunk_fn": lambda window, task: client.infer(window, task).actions,
            "n_obs_steps": meta.n_obs_steps,
            "n_actions": meta.n_actions,
            "n_action_steps": meta.n_action_steps,
            "semantics": meta.extra.get("action_space", {}).get("semantics", ""),
            "image_size": inputs.input_shapes[inputs.image_keys[0]][0] if inputs.image_keys else None,
            "camera_pose": camera_pose_of(meta.extra),
        }
    from visuomotor.policies import load_policy

    policy = load_policy(args.checkpoint, device="cpu")
    c = policy.config

    inputs = PolicyInputs(c.state_keys, c.image_keys, c.input_shapes, c.action_dim)
    return {
        "inputs": inputs,
        "chunk_fn": policy.chunk_from_window,
        "n_obs_steps": c.n_obs_steps,
        "n_actions": c.horizon - c.n_obs_steps + 1,
        "n_action_steps": c.n_action_steps,
        "semantics": policy.dataset.get("action_space", {}).get("semantics", ""),
        "image_size": c.input_shapes[c.image_keys[0]][0] if c.image_keys else None,
        "camera_pose": camera_pose_of(policy.dataset),
    }


def stop_on_interrupt(controls: Any) -> Any:
    """Ctrl-C stops like the stop key: the episode in progress ends, the robot holds, then disconnects."""
    signal.signal(signal.SIGINT, lambda _sig, _frame: controls.stop())
    return controls


def _episode_summary(robot: Any, log: Any, index: int, first_seed: int) -> dict[str, Any]:
    """One episode's figures; a simulated robot's name its env and seed, as `eval --json` does, so
    `visuomotor compare` pairs a deployment with an evaluation seed by seed."""
    periods = sorted(log.periods) or [0.0]
    where = {"env_id": robot.env_id, "seed": first_seed + index} if hasattr(robot, "start_episode") else {}
    return {
        "episode": index,
        **where,
        "success": bool(getattr(robot, "success", False)),
        "ticks": len(log.actions),
        "holds": log.holds,
        "late_ticks": log.late_ticks,
        "period_ms_p50": 1e3 * statistics.median(periods),
        "period_ms_p99": 1e3 * periods[min(len(periods) - 1, int(0.99 * len(periods)))],
    }


def _summary(
    args: argparse.Namespace, episodes: list[dict[str, Any]], safety: dict[str, int], failures: int
) -> dict[str, Any]:
    successes = sum(e["success"] for e in episodes)
    return {
        "robot": args.robot,
        "policy": args.checkpoint or args.server,
        "fps": args.fps,
        "dry_run": args.dry_run,
        "episodes": len(episodes),
        "success_rate": successes / len(episodes) if episodes else 0.0,
        "safety": safety,
        "policy_failures": failures,
        "per_episode": episodes,
        "episode_results": [e for e in episodes if "seed" in e],  # for visuomotor compare
    }
