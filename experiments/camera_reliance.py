"""How much an image policy's actions depend on each of its cameras (BENCHMARKS.md, PAD MT10): the error
of its open-loop action chunks on a store's windows, as they are and with one camera's frames swapped
for those of other windows of the same task (the rest of the observation kept).

A camera whose swap leaves the error where it was is one the policy does not use; a large rise says the
actions read it. Errors are mean squared differences to the demonstrated chunks in the env's action
units, per task, with one fixed sampling seed so the only difference between columns is the camera.

    python experiments/camera_reliance.py RUN_OR_CHECKPOINT STORE [--every 4] [--seed 0]

Prints one JSON object per task: windows, the error as is, and the error with each camera swapped.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets.sampler import SequenceSampler
from visuomotor.policies import load_policy


def chunk_error(policy: Any, windows: dict[str, np.ndarray], seed: int) -> float:
    """Mean squared error of the sampled chunks to the windows' demonstrated actions."""
    batch = {k: torch.from_numpy(v) for k, v in windows.items()}
    chunk = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(seed))
    return float(((chunk.numpy() - windows["action"]) ** 2).mean())


def task_reliance(
    policy: Any, windows: dict[str, np.ndarray], rng: np.random.Generator, seed: int
) -> dict[str, float]:
    """The error as is and with each camera's frames permuted across the windows (one task's)."""
    order = rng.permutation(len(windows["action"]))
    row = {"as_is": chunk_error(policy, windows, seed)}
    for key in policy.config.image_keys:
        row[f"{key.rsplit('.', 1)[-1]}_swapped"] = chunk_error(
            policy, windows | {key: windows[key][order]}, seed
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("store")
    parser.add_argument("--every", type=int, default=4, help="take every k-th window of each task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint).eval()
    if not policy.config.image_keys:
        raise SystemExit(f"{args.checkpoint}: the policy reads no camera")
    store = EpisodeStore.open(args.store)
    rng = np.random.default_rng(args.seed)
    for task in store.tasks:
        episodes = [e for e in range(store.num_episodes) if store.task(e) == task]
        sampler = SequenceSampler(store, policy.config.window_spec(), episodes=episodes)
        idx = np.arange(0, len(sampler), args.every)
        if len(idx) < 2:  # nothing to swap with
            continue
        row = task_reliance(policy, sampler.sample(idx), rng, args.seed)
        print(json.dumps({"task": task, "windows": len(idx)} | {k: round(v, 4) for k, v in row.items()}))


if __name__ == "__main__":
    main()
