"""Collect scripted-expert demonstrations into an episode store (zarr), in parallel worker processes.

Keeps successful episodes only (unless --keep-failed), trying new seeds until every task has
--episodes of them. Each episode is committed as it arrives, so Ctrl-C or a kill keeps everything
committed; running again with the same --out appends, continuing after the seeds already used.
A task set (metaworld/MT10) collects --episodes per task, with each task's instruction text.

    visuomotor collect --env metaworld/pick-place-v3 --episodes 50 --out data/pp.zarr --image-size 64
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", required=True, help="env id or task set, e.g. metaworld/pick-place-v3, metaworld/MT10"
    )
    parser.add_argument("--episodes", type=int, required=True, help="episodes to collect per task")
    parser.add_argument("--out", required=True, metavar="STORE", help="episode store to create or append to")
    parser.add_argument("--image-size", type=int, default=64, help="camera image size in pixels (default 64)")
    parser.add_argument(
        "--camera", action="append", metavar="NAME", help="camera to record (repeatable; default: the env's)"
    )
    parser.add_argument(
        "--camera-pose",
        metavar="POSE",
        help="Metaworld's corner2 pose: lerobot (default), dp3 (closer to the table) or metaworld "
        "(the original, far); recorded in the store, and evaluation renders from it",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="first episode seed (default 0; appends continue)"
    )
    parser.add_argument(
        "--action-noise", type=float, default=0.0, metavar="SIGMA", help="Gaussian noise std added to actions"
    )
    parser.add_argument("--keep-failed", action="store_true", help="keep failed episodes too (no retries)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one per core)")
    parser.add_argument(
        "--max-attempts", type=int, help="attempts per task before giving up (default 4 x episodes + 10)"
    )
    parser.add_argument("--max-steps", type=int, help="episode step limit (default: the env's)")
    parser.add_argument(
        "--settle-steps",
        type=int,
        default=0,
        help="expert steps recorded after the first success (default 0: stop at the first success)",
    )


def run(args: argparse.Namespace) -> int:
    from visuomotor.eval.rollout import EnvConfig
    from visuomotor.sim.collect import collect

    cfg = EnvConfig(
        cameras=tuple(args.camera) if args.camera else None,
        image_size=args.image_size,
        render=True,
        max_episode_steps=args.max_steps,
        camera_pose=args.camera_pose,
    )
    report = collect(
        args.env,
        args.episodes,
        args.out,
        env_cfg=cfg,
        seed=args.seed,
        action_noise=args.action_noise,
        settle_steps=args.settle_steps,
        keep_failed=args.keep_failed,
        workers=args.workers,
        max_attempts=args.max_attempts,
    )
    print(
        f"saved {report.saved} episodes ({report.frames} frames) to {report.store}; "
        f"{report.successes}/{report.attempts} attempts succeeded; "
        f"{report.total_episodes} episodes in the store; {report.episodes_per_minute:.1f} episodes/min"
    )
    return 0
