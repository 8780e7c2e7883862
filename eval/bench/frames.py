"""`visuomotor bench frames --checkpoint RUN --store STORE`: how well a PAD checkpoint predicts future frames
on a store's episodes (give it held-out ones: demonstrations collected with other seeds).

Windows evenly spread over the store (the training sampler's windows: frames past an episode's end repeat
its last frame) are denoised with the checkpoint's own inference settings and a fixed generator. Reported
per camera and per future offset: PSNR of the predicted frames against the real ones, beside the PSNR of
copying the current frame ("nothing moves"), the baseline a useful prediction must beat
(architecture.md §PAD). When the image branch works on latents (a VAE's or the run's own autoencoder),
also the PSNR of the real future frames passed through that space (encoded, decoded): the most a
prediction in it can reach.

Also the actions on the same windows: the mean squared error (normalised action space, whole chunk and the
executed steps) of the chunk the policy samples, and, for PAD, of the chunk it samples when handed the
real future frames noised to each step's level instead of its own predictions: how much better its
actions would be with perfect frame prediction. The ablation (predict_images=false) gets the first only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visuomotor.errors import InvalidInputError

WINDOWS, QUICK_WINDOWS, BATCH = 96, 8, 16
TAKES_OVERRIDES = True
"""`bench frames -o FIELD=VALUE` measures the checkpoint with changed inference fields (core/commands/bench.py)."""


def _load_pad(checkpoint: str, overrides: dict[str, str] | None):
    from visuomotor.policies import load_policy

    policy = load_policy(checkpoint, overrides=overrides).eval()
    if not hasattr(policy, "frame_predictions"):
        raise InvalidInputError(f"{checkpoint}: a '{policy.name}' checkpoint; bench frames needs PAD")
    return policy


def _windows(policy, store_path: str, windows: int):
    """Batches of `windows` training-sampler windows spread evenly over the store, with their task texts."""
    from visuomotor.datasets import EpisodeStore, SequenceSampler

    sampler = SequenceSampler(EpisodeStore.open(store_path), policy.config.window_spec())
    tasks = sampler.tasks
    idx = np.linspace(0, len(sampler) - 1, min(windows, len(sampler))).astype(np.int64)
    for start in range(0, len(idx), BATCH):
        sample = sampler.sample(idx[start : start + BATCH])
        # The store's task order need not be the checkpoint's: the policy is handed the task texts.
        sample["task"] = [tasks[i] for i in sample.pop("task_index")]
        yield sample


def _predict(policy, store_path: str, windows: int) -> dict[str, np.ndarray]:
    """Current, real and predicted frames of `windows` windows spread over the store, all cameras."""
    generator = torch.Generator().manual_seed(0)
    outs = [policy.frame_predictions(sample, generator) for sample in _windows(policy, store_path, windows)]
    frames = {k: np.concatenate([o[k] for o in outs]) for k in ("current", "real", "predicted")}
    if policy.config.latent_frames:
        frames["reconstructed"] = policy.reconstruct(frames["real"])
    return frames


def action_errors(policy, store_path: str, windows: int) -> dict[str, Any]:
    """Mean squared error of sampled chunks to the demonstrated ones, normalised, over the whole chunk and
    its first n_action_steps: sampled as the policy acts, and (PAD) with the real future frames given."""
    modes = ("sampled", "real_future") if policy.config.predict_images else ("sampled",)
    squared: dict[str, list[torch.Tensor]] = {m: [] for m in modes}
    for sample in _windows(policy, store_path, windows):
        target = policy.normalizer.normalize_key("action", torch.as_tensor(sample["action"]).float())
        for mode in modes:
            generator = torch.Generator().manual_seed(0)  # the same noise for both modes
            chunk = policy.sample_chunk(sample, generator, real_future=mode == "real_future")
            squared[mode].append((policy.normalizer.normalize_key("action", chunk) - target) ** 2)
    executed = policy.config.n_action_steps
    out: dict[str, Any] = {"windows": sum(len(p) for p in squared["sampled"])}
    for mode, parts in squared.items():
        err = torch.cat(parts)  # (windows, horizon, action_dim)
        out[mode] = {
            "chunk_mse": round(err.mean().item(), 4),
            "executed_mse": round(err[:, :executed].mean().item(), 4),
        }
    return out


def frame_psnr(frames: dict[str, np.ndarray], cameras: list[str], offsets: list[int]) -> dict[str, Any]:
    """Per camera and offset: PSNR (dB) of the prediction and of copying the current frame, and of the
    real frame through the latent space when `frames` has "reconstructed". frames: current (B, C, H, W,
    3); real, predicted and reconstructed (B, k, C, H, W, 3), uint8."""
    from visuomotor.policies.pad.pictures import psnr

    out: dict[str, Any] = {}
    for c, camera in enumerate(cameras):
        current = frames["current"][:, c]
        out[camera] = {}
        for k, o in enumerate(offsets):
            real = frames["real"][:, k, c]
            scores = {
                "predicted_db": round(psnr(real, frames["predicted"][:, k, c]), 2),
                "copy_current_db": round(psnr(real, current), 2),
            }
            if "reconstructed" in frames:
                scores["autoencoded_db"] = round(psnr(real, frames["reconstructed"][:, k, c]), 2)
            out[camera][f"t+{o}"] = scores
    return out


def run_benchmark(
    json_path: str | None,
    quick: bool = False,
    store_path: str | None = None,
    checkpoint: str | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """overrides: the checkpoint's inference-time fields changed (e.g. num_inference_steps), as eval's -o."""
    if not checkpoint or not store_path:
        raise InvalidInputError("bench frames needs --checkpoint (a PAD run or checkpoint) and --store")
    policy = _load_pad(checkpoint, overrides)
    c = policy.config
    n = QUICK_WINDOWS if quick else WINDOWS
    t0 = time.perf_counter()
    frames = _predict(policy, store_path, n) if c.predict_images else None
    out = {
        "benchmark": "frames",
        "date": time.strftime("%Y-%m-%d"),
        "checkpoint": str(checkpoint),
        "store": str(Path(store_path)),
        "num_inference_steps": c.num_inference_steps,
        "overrides": dict(overrides or {}),
        "psnr": frame_psnr(frames, list(c.image_keys), list(c.future_offsets)) if frames else None,
        "actions": action_errors(policy, store_path, n),
    }
    out["windows"] = out["actions"].pop("windows")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
