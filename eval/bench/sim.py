"""Simulator throughput benchmark (`visuomotor bench sim`): how fast can we step, render and collect here?

Figures (architecture.md §Numbers: machine, date and command are written next to them):

- `envs.<id>.steps_per_s_no_render`: env steps/s with `render=False` (physics + observation only).
- `envs.<id>.render.<size>px.steps_per_s`: env steps/s with one camera rendered at that size, which is
  also its frames/s. One camera so both suites compare per image (Metaworld corner2, robosuite
  agentview); each measurement reuses one env and its single renderer (architecture.md §Rendering).
- `collection`: scripted collection through `visuomotor.sim.collect` (64 px, 2 workers, successful
  episodes only) into a temporary store: episodes/minute and frames/s, wall time including worker start.

Random actions drive the step/render timings (seeded): throughput, not behaviour, is measured.
Each measurement runs in a fresh worker process, so the numbers include no import of the other
simulator and renderers never coexist in a process.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BENCH_ENVS = ("metaworld/pick-place-v3", "robosuite/Lift")
RENDER_CAMERAS = {"metaworld": "corner2", "robosuite": "agentview"}
IMAGE_SIZES = (64, 128)
COLLECT_ENV = "metaworld/MT10"


@dataclass(frozen=True)
class StepBench:
    env_id: str
    steps: int
    render: bool
    image_size: int = 64
    warmup: int = 5


def _bench_steps(job: StepBench) -> dict[str, Any]:
    """Time `job.steps` random-action env steps (resetting on episode end); runs in a worker process."""
    from visuomotor.sim import make_env

    suite = job.env_id.split("/", 1)[0]
    cameras = (RENDER_CAMERAS[suite],) if job.render else ()
    t_make = time.perf_counter()
    env = make_env(job.env_id, cameras=cameras or None, image_size=job.image_size, render=job.render, seed=0)
    make_s = time.perf_counter() - t_make
    try:
        env.action_space.seed(0)
        env.reset(seed=0)
        for _ in range(job.warmup):  # first render compiles shaders / allocates buffers
            env.step(env.action_space.sample())
        env.reset(seed=1)
        resets = 0
        t0 = time.perf_counter()
        for _ in range(job.steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
                resets += 1
        dt = time.perf_counter() - t0
    finally:
        env.close()
    return {
        "steps": job.steps,
        "seconds": dt,
        "steps_per_s": job.steps / dt,
        "resets": resets,
        "cameras": list(cameras),
        "make_env_s": make_s,
    }


def _run_isolated(job: StepBench) -> dict[str, Any]:
    from visuomotor.sim.workers import WorkerPool

    with WorkerPool(_bench_steps, 1) as pool:
        pool.submit(0, job)
        return pool.next_result()[1]


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "load_avg_1min_at_start": load,
    }


def run_benchmark(json_path: str | None, quick: bool = False) -> dict:
    """Run the simulator benchmark, write its figures to `json_path` (if given) and return them.

    quick=True is a seconds-long smoke version for tests: Metaworld only, a few steps, and a two-episode
    single-task collection; its numbers are not meant to be quoted.
    """
    envs = BENCH_ENVS[:1] if quick else BENCH_ENVS
    n_steps = 20 if quick else 400
    sizes = IMAGE_SIZES[:1] if quick else IMAGE_SIZES
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    result: dict[str, Any] = {
        "benchmark": "sim",
        "command": "visuomotor bench sim"
        + (f" --json {json_path}" if json_path else "")
        + (" --quick" if quick else ""),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": _machine(),
        "envs": {},
    }
    for env_id in envs:
        logger.info("bench sim: %s without rendering (%d steps)", env_id, n_steps)
        no_render = _run_isolated(StepBench(env_id, n_steps, render=False))
        entry: dict[str, Any] = {
            "steps_per_s_no_render": no_render["steps_per_s"],
            "no_render": no_render,
            "render": {},
        }
        for size in sizes:
            logger.info("bench sim: %s rendering at %d px (%d steps)", env_id, size, n_steps // 2)
            r = _run_isolated(StepBench(env_id, max(10, n_steps // 2), render=True, image_size=size))
            r["frames_per_s"] = r["steps_per_s"] * len(r["cameras"])
            entry["render"][f"{size}px"] = r
        result["envs"][env_id] = entry
    result["collection"] = _bench_collection(quick)
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _bench_collection(quick: bool) -> dict[str, Any]:
    from visuomotor.eval.rollout import EnvConfig
    from visuomotor.sim.collect import collect

    env = "metaworld/reach-v3" if quick else COLLECT_ENV
    per_task = 1 if quick else 2
    workers = 2
    logger.info(
        "bench sim: scripted collection of %s, %d episode(s) per task, %d workers", env, per_task, workers
    )
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as tmp:
        report = collect(
            env,
            per_task,
            Path(tmp) / "store.zarr",
            env_cfg=EnvConfig(cameras=("corner2",), image_size=64),
            workers=workers,
            progress=False,
        )
    return {
        "env": env,
        "episodes_per_task": per_task,
        "image_size": 64,
        "workers": workers,
        "episodes": report.saved,
        "attempts": report.attempts,
        "frames": report.frames,
        "wall_s": report.wall_s,
        "episodes_per_minute": report.episodes_per_minute,
        "frames_per_s": report.frames / report.wall_s,
        "mean_episode_length": report.frames / max(1, report.saved),
        "note": "wall time includes starting the workers and building one env per task per worker",
    }


def format_summary(result: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"{result['command']}  ({result['date']}, {result['machine']['cpu_count']} CPUs)"]
    for env_id, e in result["envs"].items():
        parts = [f"{e['steps_per_s_no_render']:.0f} steps/s no render"]
        parts += [f"{r['frames_per_s']:.0f} frames/s @{k}" for k, r in e["render"].items()]
        lines.append(f"  {env_id}: " + ", ".join(parts))
    c = result["collection"]
    lines.append(
        f"  collect {c['env']} (64 px, {c['workers']} workers): {c['episodes_per_minute']:.1f} episodes/min, "
        f"{c['frames_per_s']:.0f} frames/s"
    )
    return "\n".join(lines)
