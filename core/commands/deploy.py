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

import numpy as np

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
    from visuomotor.real_robot.robot import FeatureMap
    from visuomotor.real_robot.runtime import DeployConfig, PolicyWorker, run_episode
    from visuomotor.real_robot.safety import SafetyLayer, SafetyLimits, default_limits

    if args.episodes < 1 or args.fps <= 0:
        raise InvalidInputError(f"--episodes must be >= 1 and --fps > 0, got {args.episodes} and {args.fps}")
    source = _policy_source(args)
    cameras = tuple(k.split(".")[-1] for k in source["inputs"].image_keys) or None
    robot = make_robot(
        args.robot,
        cameras=cameras,
        image_size=source["image_size"] or 64,
        max_episode_steps=args.max_steps,
        port=args.robot_port,
        robot_id=args.robot_id,
    )
    robot.connect()
    stop = _stop_flag()
    try:
        fmap = FeatureMap.match(robot, source["inputs"], source["semantics"])  # before anything moves
        names = tuple(robot.action_features)
        limits = SafetyLimits.from_file(args.safety, names) if args.safety else default_limits(robot)
        safety = SafetyLayer(limits)
        task = getattr(getattr(robot, "spec", None), "instruction", None)
        cfg = DeployConfig(
            fps=args.fps, n_obs_steps=source["n_obs_steps"], blend=args.blend, dry_run=args.dry_run, task=task
        )
        cfg.max_ticks = getattr(getattr(robot, "_env", None), "max_episode_steps", None)  # a dry run ends too
        # A new chunk is asked for once n_action_steps of the last one are under way, as eval replans.
        cfg.refill_below = source["n_actions"] - source["n_action_steps"]
        worker = PolicyWorker(source["chunk_fn"])
        episodes = []
        for i in range(args.episodes):
            if stop():
                break
            if hasattr(robot, "start_episode"):
                robot.start_episode(EVAL_SEED_BASE + i)
            log = run_episode(robot, fmap, worker, safety, cfg, stop)
            episodes.append(_episode_summary(robot, log, i))
            if args.record:
                _record(args.record, robot, log, task, args.fps)
    finally:
        robot.disconnect()
    summary = _summary(args, episodes, safety.counts, worker.failures)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def _policy_source(args: argparse.Namespace) -> dict[str, Any]:
    """How to get action chunks, and what the policy reads: in-process from --checkpoint or from --server."""
    from visuomotor.real_robot.robot import PolicyInputs

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
        }
    import torch

    from visuomotor.policies import load_policy

    policy = load_policy(args.checkpoint, device="cpu")
    c = policy.config

    def chunk_fn(window: dict[str, np.ndarray], task: str | None) -> np.ndarray:
        batch: dict[str, Any] = {k: torch.from_numpy(v)[None] for k, v in window.items()}
        if task is not None:
            batch["task"] = [task]
        with torch.inference_mode():
            return policy.predict_action_chunk(batch)[0, c.n_obs_steps - 1 :].numpy()

    inputs = PolicyInputs(c.state_keys, c.image_keys, c.input_shapes, c.action_dim)
    return {
        "inputs": inputs,
        "chunk_fn": chunk_fn,
        "n_obs_steps": c.n_obs_steps,
        "n_actions": c.horizon - c.n_obs_steps + 1,
        "n_action_steps": c.n_action_steps,
        "semantics": policy.dataset.get("action_space", {}).get("semantics", ""),
        "image_size": c.input_shapes[c.image_keys[0]][0] if c.image_keys else None,
    }


def _stop_flag():
    """Ctrl-C ends the episode in progress cleanly (the robot holds, then disconnects)."""
    flag = {"stop": False}

    def handler(_sig: int, _frame: Any) -> None:
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    return lambda: flag["stop"]


def _episode_summary(robot: Any, log: Any, index: int) -> dict[str, Any]:
    periods = sorted(log.periods) or [0.0]
    return {
        "episode": index,
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
    }


def _record(path: str, robot: Any, log: Any, task: str | None, fps: float) -> None:
    """Append the episode to the store (created on first use); a crash loses at most this episode."""
    from visuomotor.datasets import EpisodeStore

    if not log.actions:
        return
    store = (
        EpisodeStore.open(path, mode="a")
        if Path(path).exists()
        else EpisodeStore.create(path, fps=max(1, round(fps)), env_id=getattr(robot, "env_id", robot.name))
    )
    data = {k: np.stack([f[k] for f in log.frames]) for k in log.frames[0]}
    data["action"] = np.stack(log.actions)
    data["deploy.timestamp"] = np.asarray(log.timestamps, np.float32)
    data["deploy.safety"] = np.asarray(log.safety, np.int32)
    store.append_episode(data, task=task or "", meta={"success": bool(getattr(robot, "success", False))})
