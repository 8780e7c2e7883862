"""PAD's frame prediction on held-out episodes: PSNR of the predicted future frames against the real ones,
beside the PSNR of copying the current frame ("nothing moves"), per future offset (BENCHMARKS.md, PAD).
Training logs the same figures on its own windows; this one reads demonstrations it never saw.

    visuomotor collect --env metaworld/MT10 --episodes 3 --seed 5000 --out data/heldout.zarr --image-size 64
    python experiments/pad_frame_psnr.py runs/pad data/heldout.zarr [--windows 96]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from visuomotor.datasets import EpisodeStore, SequenceSampler
from visuomotor.policies import load_policy


def squared_errors(real: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Per future offset, the summed squared error over windows and pixels. real, guess (B, k, H, W, 3)."""
    diff = real.astype(np.float64) - guess.astype(np.float64)
    return (diff**2).sum(axis=(0, 2, 3, 4))


def to_psnr(sse: np.ndarray, count: int) -> list[float]:
    return [round(float(10 * np.log10(255.0**2 / (s / count))), 2) for s in sse]


def measure(run: str, store_path: str, windows: int, batch: int = 16) -> dict[str, object]:
    policy = load_policy(run).eval()
    config = policy.config
    if not getattr(config, "predict_images", False):
        raise SystemExit(f"{run}: not a policy that predicts frames (PAD with predict_images=true)")
    sampler = SequenceSampler(EpisodeStore.open(store_path), config.window_spec())
    tasks = sampler.tasks
    idx = np.linspace(0, len(sampler) - 1, min(windows, len(sampler))).astype(np.int64)
    generator = torch.Generator().manual_seed(0)
    sse_model = sse_copy = None
    pixels = 0
    for start in range(0, len(idx), batch):
        sample = sampler.sample(idx[start : start + batch])
        # The store's task order need not be the policy's: hand over the task texts.
        sample["task"] = [tasks[i] for i in sample.pop("task_index")]
        out = policy.frame_predictions(sample, generator)
        copy = np.repeat(out["current"][:, None], out["real"].shape[1], axis=1)
        m, c = squared_errors(out["real"], out["predicted"]), squared_errors(out["real"], copy)
        sse_model = m if sse_model is None else sse_model + m
        sse_copy = c if sse_copy is None else sse_copy + c
        pixels += out["real"][:, 0].size
    return {
        "run": run,
        "store": store_path,
        "windows": len(idx),
        "offsets": list(config.future_offsets),
        "psnr_predicted_db": to_psnr(sse_model, pixels),
        "psnr_copy_current_db": to_psnr(sse_copy, pixels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("store")
    parser.add_argument("--windows", type=int, default=96)
    args = parser.parse_args()
    print(json.dumps(measure(args.run, args.store, args.windows), indent=2))


if __name__ == "__main__":
    main()
