"""Where a Diffusion Policy image `cpu` training step spends its time on this CPU, and what PyTorch's CPU
options do to it: float32 (as trained), channels-last memory format, bf16 autocast, `torch.compile` of
the camera encoder. Each variant runs in its own process, one after the other.

    python experiments/cpu_train_variants.py --store data/mt3.zarr --camera corner2 --threads 1

Per variant: median milliseconds (over 12 steps after 3 warm-up steps) of sampling the batch, forward,
backward and the AdamW step; then, for float32, the camera encoder's share (its forward + backward alone
on the same batch). The figures in docs/experiments.md ("Training speed on a CPU") come from this script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

VARIANTS = ("float32", "channels_last", "bf16_autocast", "compile_encoder")
WARMUP, TIMED, BATCH = 3, 12, 64


def _policy_and_sampler(store_path: str, camera: str) -> tuple[Any, Any]:
    from visuomotor.datasets import EpisodeStore, SequenceSampler
    from visuomotor.datasets.stats import load_stats
    from visuomotor.keys import image_key
    from visuomotor.policies import get_policy_entry, make_config

    store = EpisodeStore.open(store_path)
    keys = ["observation.state", image_key(camera)]
    config = make_config("diffusion", "cpu", state_keys=keys[:1], image_keys=keys[1:])
    config.input_shapes = {k: list(store.shape(k)) for k in keys}
    config.action_dim = int(store.shape("action")[0])
    config.tasks = store.tasks if len(store.tasks) > 1 else []
    config.validate_inputs()
    policy = get_policy_entry("diffusion").load()[0](config, load_stats(store, [*keys, "action"]))
    return policy.train(), SequenceSampler(store, config.window_spec())


def _median_ms(times: list[float]) -> float:
    return round(1000 * statistics.median(times), 1)


def measure(variant: str, store_path: str, camera: str) -> dict[str, float]:
    """Phase times of one variant's training steps (in this process)."""
    from visuomotor.train import batch_indices

    torch.manual_seed(0)
    policy, sampler = _policy_and_sampler(store_path, camera)
    if variant == "channels_last":
        policy = policy.to(memory_format=torch.channels_last)
    if variant == "compile_encoder":
        for name, module in policy.encoder.cameras.items():
            policy.encoder.cameras[name] = torch.compile(module)
    autocast = variant == "bf16_autocast"
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    phases: dict[str, list[float]] = {k: [] for k in ("sample", "forward", "backward", "optimizer", "step")}
    for step in range(WARMUP + TIMED):
        t0 = time.perf_counter()
        windows = sampler.sample(batch_indices(len(sampler), BATCH, 0, step, 0))
        batch = {k: torch.from_numpy(v) for k, v in windows.items()}
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            loss, _ = policy(batch)
        t2 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        t4 = time.perf_counter()
        if step >= WARMUP:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                phases[name].append(dt)
    out = {f"{k}_ms": _median_ms(v) for k, v in phases.items()}
    if variant == "float32":
        out["encoder_forward_backward_ms"] = _encoder_ms(policy, batch)
    return out


def _encoder_ms(policy: Any, batch: dict[str, torch.Tensor]) -> float:
    """The camera encoder's forward + backward alone on one batch (the rest of the step is the U-Net)."""
    obs = policy.prepare_obs(batch)
    tasks = torch.as_tensor(batch["task_index"]) if "task_index" in batch else None
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        policy.encoder(obs, tasks).sum().backward()
        times.append(time.perf_counter() - t0)
    return _median_ms(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--camera", default="corner2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help="measure one variant in this process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure(args.variant, args.store, args.camera)))
        return
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--store", args.store, "--camera", args.camera]
        cmd += ["--threads", str(args.threads), "--variant", variant]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(variant, results[variant], flush=True)
    base = results["float32"]["step_ms"]
    for variant, r in results.items():
        print(f"{variant:>16}: {r['step_ms']:8.1f} ms per step ({base / r['step_ms']:.2f}x float32)")


if __name__ == "__main__":
    main()
