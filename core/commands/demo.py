"""The quickstart, end to end on a small default: collect scripted demonstrations into an episode store,
inspect it, train a Diffusion Policy on it (`cpu` preset) from the two cameras of the vision recipe and
the robot's proprioception, evaluate it in simulation, print its success rate and write videos that show
what the policy saw. Each step is the same `visuomotor` command a user would type; they are printed as
they run. `--from-state` trains from the simulator's privileged state instead (the camera is then only
recorded for the videos).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from visuomotor.errors import PathExistsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="metaworld/drawer-open-v3", help="environment id")
    parser.add_argument("--episodes", type=int, default=20, help="demonstrations to collect")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: 1500 from cameras, 1000 from state)"
    )
    parser.add_argument(
        "--from-state",
        action="store_true",
        help="train from the simulator's privileged state (object and goal positions) instead of the cameras",
    )
    parser.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--out", default=None, help="output directory (default: a new runs/demo-N)")


# Keyed by --from-state. From cameras: the vision recipe (BENCHMARKS.md, Quickstart: 100% on drawer-open
# with 1,500 steps); the run takes the store's cameras and proprio by default. From state: one camera
# recorded for the videos only, the full Metaworld state (object and goal positions) as the input. Other
# simulators collect their default camera.
COLLECT = {
    False: "--image-size 64 --camera corner2 --camera gripperPOV --camera-pose dp3",
    True: "--image-size 64",
}
INPUTS = {False: "", True: "--cameras none -o state_keys=observation.environment_state"}
STEPS = {False: 1500, True: 1000}


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

    cameras = COLLECT[args.from_state or not args.env.startswith("metaworld/")]  # others: default camera
    steps = [
        f"collect --env {q(args.env)} --episodes {args.episodes} --out {q(store)} {cameras}",
        f"dataset info {q(store)}",
        f"train --policy diffusion --preset cpu --data {q(store)} --out {q(out / 'run')} "
        f"--steps {args.steps or STEPS[args.from_state]} {INPUTS[args.from_state]}".rstrip(),
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
