"""`visuomotor bench latency`: milliseconds per predicted action chunk at batch 1 on this machine.

Every registered policy is built from its `cpu` preset for a state-based Metaworld MT10 policy (39-d
state, 4-d action, 10 tasks; 2 observation steps, horizon 16); the `_image` variants add one 64x64 camera
(the shape of the image benchmark: 4-d proprio state plus the camera). Diffusion Policy is measured
with DDPM-100 and DDIM-10 sampling; CARP with greedy decoding (4 KV-cached transformer passes plus the
tokenizer's decoder); PAD (images only, horizon 12) with DDIM-10 over its DiT, which denoises the three
future frames with the chunk. All variants run in one
process, interleaved round by round, so machine noise hits them alike; the median over rounds is reported.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from visuomotor.keys import image_key
from visuomotor.policies import REGISTRY, get_policy_entry, make_config

STATE_DIM, PROPRIO_DIM, ACTION_DIM, IMAGE_HW = 39, 4, 4, 64
CAMERA = image_key("corner2")
TASKS = [f"task {i}" for i in range(10)]
VARIANTS: dict[str, tuple[str, dict[str, Any], bool]] = {  # name -> (policy, overrides, with a camera)
    "diffusion_ddpm100": ("diffusion", {"sampler": "ddpm", "num_inference_steps": 100}, False),
    "diffusion_ddim10": ("diffusion", {"sampler": "ddim", "num_inference_steps": 10}, False),
    "carp": ("carp", {}, False),
    "diffusion_ddim10_image": ("diffusion", {"sampler": "ddim", "num_inference_steps": 10}, True),
    "carp_image": ("carp", {}, True),
    "pad_image": ("pad", {}, True),
}


def _stats(dim: int) -> dict[str, list[float]]:
    return {"min": [-1.0] * dim, "max": [1.0] * dim, "mean": [0.0] * dim, "std": [1.0] * dim}


def build(policy_name: str, overrides: dict[str, Any], image: bool = False):
    state_dim = PROPRIO_DIM if image else STATE_DIM
    shapes = {"observation.state": [state_dim]} | ({CAMERA: [IMAGE_HW, IMAGE_HW, 3]} if image else {})
    config = make_config(
        policy_name,
        "cpu",
        input_shapes=shapes,
        image_keys=(CAMERA,) if image else (),
        action_dim=ACTION_DIM,
        tasks=TASKS,
        **overrides,
    )
    stats = {"observation.state": _stats(state_dim), "action": _stats(ACTION_DIM)}
    if image:
        stats[CAMERA] = _stats(3)
    return get_policy_entry(policy_name).load()[0](config, stats).eval()


def observation(image: bool) -> dict[str, Any]:
    if not image:
        return {"observation.state": torch.randn(1, 2, STATE_DIM), "task": [TASKS[0]]}
    frames = torch.randint(0, 256, (1, 2, IMAGE_HW, IMAGE_HW, 3), dtype=torch.uint8)
    return {"observation.state": torch.randn(1, 2, PROPRIO_DIM), CAMERA: frames, "task": [TASKS[0]]}


def run_benchmark(json_path: str | None, quick: bool = False) -> dict[str, Any]:
    rounds, warmup = (3, 1) if quick else (30, 3)
    specs = dict(VARIANTS)
    for name in REGISTRY:  # every registered policy is measured, at least with its cpu preset
        if not any(p == name for p, _, _ in specs.values()):
            specs[name] = (name, {}, False)
    variants = {name: build(p, o, image) for name, (p, o, image) in specs.items()}
    obs = {name: observation(image) for name, (_, _, image) in specs.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for r in range(warmup + rounds):
            for name, policy in variants.items():
                t0 = time.perf_counter()
                policy.predict_action_chunk(obs[name])
                if r >= warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    out = {
        "benchmark": "latency",
        "date": time.strftime("%Y-%m-%d"),
        "batch_size": 1,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "policies": {
            name: {
                "ms_per_chunk": statistics.median(times[name]),
                "ms_p90": sorted(times[name])[int(0.9 * (len(times[name]) - 1))],
                "params": sum(p.numel() for p in policy.parameters()),
            }
            for name, policy in variants.items()
        },
    }
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
