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
from visuomotor.policies.pad.pictures import psnr


def per_offset_psnr(real: np.ndarray, guess: np.ndarray) -> list[float]:
    """PSNR at each future offset over all windows. real, guess (B, k, H, W, 3) uint8."""
    return [round(psnr(real[:, k], guess[:, k]), 2) for k in range(real.shape[1])]


def measure(run: str, store_path: str, windows: int, batch: int = 16) -> dict[str, object]:
    policy = load_policy(run).eval()
    config = policy.config
    if not getattr(config, "predict_images", False):
        raise SystemExit(f"{run}: not a policy that predicts frames (PAD with predict_images=true)")
    sampler = SequenceSampler(EpisodeStore.open(store_path), config.window_spec())
    tasks = sampler.tasks
    idx = np.linspace(0, len(sampler) - 1, min(windows, len(sampler))).astype(np.int64)
    generator = torch.Generator().manual_seed(0)
    outs = []
    for start in range(0, len(idx), batch):
        sample = sampler.sample(idx[start : start + batch])
        # The store's task order need not be the policy's: hand over the task texts.
        sample["task"] = [tasks[i] for i in sample.pop("task_index")]
        outs.append(policy.frame_predictions(sample, generator))
    current, real, predicted = (
        np.concatenate([o[k] for o in outs]) for k in ("current", "real", "predicted")
    )
    copy = np.repeat(current[:, None], real.shape[1], axis=1)
    return {
        "run": run,
        "store": store_path,
        "windows": len(idx),
        "offsets": list(config.future_offsets),
        "psnr_predicted_db": per_offset_psnr(real, predicted),
        "psnr_copy_current_db": per_offset_psnr(real, copy),
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
