"""The quickstart, end to end on a small default: collect scripted demonstrations into an episode store,
inspect it, train a Diffusion Policy on it (`cpu` preset, state-based), evaluate the trained policy in
simulation, print its success rate and write videos. Each step is the same `visuomotor` command a user
would type; they are printed as they run.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from visuomotor.errors import PathExistsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="metaworld/drawer-open-v3", help="environment id")
    parser.add_argument("--episodes", type=int, default=20, help="demonstrations to collect")
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--out", default=None, help="output directory (default: a new runs/demo-N)")


def _new_run_dir(parent: Path, stem: str) -> Path:
    """The first of parent/stem-1, stem-2, ... that does not exist: earlier runs are never overwritten."""
    n = 1
    while (parent / f"{stem}-{n}").exists():
        n += 1
    return parent / f"{stem}-{n}"


def run(args: argparse.Namespace) -> int:
    from visuomotor.cli import main

    out = Path(args.out) if args.out else _new_run_dir(Path("runs"), "demo")
    store = out / "demo.zarr"
    if store.exists():
        raise PathExistsError(f"{store} exists from an earlier run; pass --out NEW_DIR or remove it")
    eval_json = out / "eval.json"

    def q(x: object) -> str:
        return shlex.quote(str(x))

    steps = [
        f"collect --env {q(args.env)} --episodes {args.episodes} --out {q(store)} --image-size 64",
        f"dataset info {q(store)}",
        # State-based: the full Metaworld state (object and goal positions) conditions the policy; the
        # camera recorded for the videos is not an input (--cameras none).
        f"train --policy diffusion --preset cpu --data {q(store)} --out {q(out / 'run')} --steps {args.steps} "
        "--cameras none -o state_keys=observation.environment_state",
        f"eval --checkpoint {q(out / 'run')} --env {q(args.env)} --episodes {args.eval_episodes} "
        f"--json {q(eval_json)} --video {q(out / 'videos')} --videos-per-task 2",
    ]
    for step in steps:
        print(f"\n$ visuomotor {step}", flush=True)
        code = main(shlex.split(step))
        if code:
            return code
    import json

    report = json.loads(eval_json.read_text())
    lo, hi = report["ci95"]
    print(
        f"\ndemo done: success rate {report['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%}, "
        f"{report['episodes']} episodes)\n  store {store}\n  run {out / 'run'}\n  videos {out / 'videos'}"
    )
    return 0
