"""`visuomotor bench train`: training throughput (samples/s) and peak resident memory of every policy's
presets, from state and from images, in one run.

Each variant trains with the one training loop (`visuomotor.train.train`) on the same synthetic
MT10-shaped store (10 tasks; 39-d environment state, 4-d proprio state, one 64x64 camera, 4-d action):
state variants see the 39-d state, image variants the proprio state and the camera, as the image
presets do. Every variant runs in its own process, one after the other, so its peak resident set size
(`ru_maxrss`) is its own and two variants never share the cores. A step's time is the wall-clock time
between two consecutive log entries (one per step); the median over the timed steps (after warm-up
steps, which include the first allocations) gives samples/s = batch size / median step time. A policy
with training stages (CARP: tokenizer, then transformer) is timed per stage. Torch threads follow
`OMP_NUM_THREADS` (reported).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.keys import image_key

CAMERA = "corner2"
TASKS = [f"task {i}" for i in range(10)]
STATE_DIM = 39
# (timed steps, warm-up steps) per preset; `paper` networks are large on a CPU.
STEPS = {"cpu": (20, 5), "paper": (4, 2)}
QUICK_STEPS = (3, 2)
# PAD's `paper` network is DiT-XL (675 M parameters over 257 tokens): at the preset's batch of 64 its
# activations alone would need tens of GB, more than a workstation has, and one step takes minutes on a
# CPU. It is timed on a batch of 2 for 3 steps; the JSON reports the batch its figures come from.
SMALL: dict[tuple[str, str], tuple[int, tuple[int, int]]] = {("pad", "paper"): (2, (2, 1))}
FIRST_STAGES = {"carp": "tokenizer_steps", "pad": "autoencoder_steps"}
"""Two-stage policies: the field of the first stage's steps. Both stages get the same steps and are timed."""


def _store(path: Path, episodes: int = 20, length: int = 60, seed: int = 0) -> None:
    from visuomotor.datasets import EpisodeStore
    from visuomotor.eval.bench.dataload import synthetic_frames

    store = EpisodeStore.create(path, fps=10, env_id="synthetic/bench")
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        frames = synthetic_frames(rng, length)
        env_state = np.cumsum(rng.normal(scale=0.02, size=(length, STATE_DIM)), axis=0).astype(np.float32)
        data = {
            "observation.state": frames["observation.state"],
            "observation.environment_state": env_state,
            # Metaworld's actions lie in [-1, 1] (EXPO's sampler requires it without a normaliser).
            "action": np.clip(frames["action"], -1.0, 1.0),
            image_key(CAMERA): frames[image_key("front")],
        }
        store.append_episode(data, task=TASKS[e % len(TASKS)])


def variants() -> list[tuple[str, str, bool]]:
    """(policy, preset, from images) for every registered policy and both presets."""
    from visuomotor.policies import REGISTRY

    return [
        (p, preset, image)
        for p, entry in REGISTRY.items()
        for preset in ("cpu", "paper")
        for image in (False, True)
        if image or not entry.needs_cameras  # PAD predicts frames: images only
    ]


def _steps(policy: str, preset: str, quick: bool) -> tuple[int, int]:
    """(timed steps, warm-up steps) of one variant."""
    if quick:
        return QUICK_STEPS
    return SMALL[(policy, preset)][1] if (policy, preset) in SMALL else STEPS[preset]


def _overrides(
    policy: str, preset: str, image: bool, timed: int, warmup: int
) -> tuple[dict[str, str], dict[str, str]]:
    """(policy overrides, train overrides) of one variant: its inputs, one log entry per step, no
    checkpoint before the end. A two-stage variant (FIRST_STAGES) splits them evenly, so both are timed."""
    first = _first_stage(policy, preset)
    total = 2 * (timed + warmup) if first else timed + warmup
    inputs = (
        {"image_keys": json.dumps([image_key(CAMERA)])}
        if image
        else {"state_keys": json.dumps(["observation.environment_state"]), "image_keys": "[]"}
    )
    if first:
        inputs[first] = str(timed + warmup)
    train = {"steps": str(total), "log_every": "1", "save_every": str(total), "warmup_steps": "1"}
    if (policy, preset) in SMALL:
        train["batch_size"] = str(SMALL[(policy, preset)][0])
    return inputs, train


def _first_stage(policy: str, preset: str) -> str | None:
    """The config field with the steps of a variant's first training stage, when it has two: CARP's
    tokenizer, PAD's frame autoencoder (its `cpu` preset)."""
    from visuomotor.policies import make_config

    field = FIRST_STAGES.get(policy)
    return field if field and getattr(make_config(policy, preset), field) else None


def _step_times(history: list[dict[str, Any]], warmup: int) -> dict[int, list[float]]:
    """Seconds per step, by stage, leaving out each stage's first `warmup` steps. Entries without a wall
    clock are not steps (an evaluation's success rate, PAD's frame PSNR) and are skipped."""
    by_stage: dict[int, list[float]] = {}
    previous: dict[int, float] = {}
    seen: dict[int, int] = {}
    for entry in (e for e in history if "wall_s" in e):
        stage = int(entry.get("stage", 0))
        seen[stage] = seen.get(stage, 0) + 1
        if stage in previous and seen[stage] > warmup:
            by_stage.setdefault(stage, []).append(entry["wall_s"] - previous[stage])
        previous[stage] = entry["wall_s"]
    return by_stage


def _child(store: str, out: str, policy: str, preset: str, image: bool, quick: bool) -> dict[str, Any]:
    """Train one variant in this process; its throughput per stage and this process's peak RSS."""
    import resource

    import torch

    from visuomotor.train import train

    timed, warmup = _steps(policy, preset, quick)
    policy_over, train_over = _overrides(policy, preset, image, timed, warmup)
    summary = train(
        policy,
        store,
        out,
        preset=preset,
        policy_overrides=policy_over,
        train_overrides=train_over,
        progress=False,
    )
    run = json.loads((Path(out) / "run.json").read_text())
    history = json.loads((Path(out) / "metrics.json").read_text())
    batch = run["train_config"]["batch_size"]
    stages = {}
    for stage, times in sorted(_step_times(history, warmup).items()):
        median = statistics.median(times)
        # CARP's tokenizer and PAD's autoencoder train on batches of their own
        stage_batch = run["stages"][stage]["batch_size"]
        stages[str(stage)] = {
            "steps_timed": len(times),
            "s_per_step": median,
            "batch_size": stage_batch,
            "samples_per_s": stage_batch / median,
        }
    return {
        "policy": policy,
        "preset": preset,
        "inputs": "image" if image else "state",
        "batch_size": batch,
        "params": summary["params"],
        "stages": stages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def run_benchmark(json_path: str | None, quick: bool = False) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        store = Path(tmp) / "store.zarr"
        _store(store, episodes=10 if quick else 20, length=40 if quick else 60)
        todo = [v for v in variants() if v[1] == "cpu"] if quick else variants()
        for i, (policy, preset, image) in enumerate(todo):
            args = [store, Path(tmp) / f"run{i}", policy, preset, "image" if image else "state"]
            cmd = [sys.executable, "-m", "visuomotor.eval.bench.train", *map(str, args)]
            done = subprocess.run(
                [*cmd, *(["--quick"] if quick else [])], capture_output=True, text=True, env=os.environ.copy()
            )
            if done.returncode != 0:
                raise RuntimeError(f"bench train {policy} {preset} failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {"benchmark": "train", "quick": quick, "variants": results}
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":  # one variant, in its own process (see run_benchmark)
    store_arg, out_arg, policy_arg, preset_arg, inputs_arg = sys.argv[1:6]
    result = _child(store_arg, out_arg, policy_arg, preset_arg, inputs_arg == "image", "--quick" in sys.argv)
    print(json.dumps(result))
