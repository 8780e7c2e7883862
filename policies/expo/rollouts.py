"""In-process evaluation of the online learner's acting policy, and its learning curves.

Evaluation follows the rollout runner's protocol (eval/rollout.py, architecture.md §Evaluation): episode
i uses seed 1,000,000 + i, torch is seeded with it before the episode, and an episode succeeds if the env
reports success at any step (it stops there). It runs in the learner's process, on its own env, inside
`torch.random.fork_rng`, so evaluating never shifts the training RNG stream (exact resume relies on it).
Episodes of online training use seeds 3,000,000 + 100,000 * seed + episode: never a collection seed
(0, 1, ...) nor an evaluation seed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

EVAL_SEED_BASE = 1_000_000
"""The rollout runner's first evaluation seed (sim/workers.py EVAL_SEED_BASE; policies may not import sim)."""
TRAIN_SEED_BASE = 3_000_000


def train_seed(seed: int, episode: int) -> int:
    return TRAIN_SEED_BASE + 100_000 * seed + episode


def obs_tensors(obs: dict[str, Any], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """One env observation -> float32 tensors (1, ...) of `keys`."""
    return {k: torch.from_numpy(np.asarray(obs[k], np.float32))[None] for k in keys}


def evaluate(env: Any, act: Callable[[dict[str, Any]], np.ndarray], episodes: int) -> dict[str, Any]:
    """Success rate (with a Wilson 95% interval), mean length, over `episodes` evaluation seeds."""
    from visuomotor.eval.metrics import wilson_interval  # pure numbers; see architecture.md §EXPO

    successes, lengths = 0, []
    with torch.random.fork_rng(devices=[]):
        for i in range(episodes):
            seed = EVAL_SEED_BASE + i
            torch.manual_seed(seed)
            obs, _ = env.reset(seed=seed)
            success, steps = False, 0
            while steps < int(env.max_episode_steps):
                obs, _, terminated, truncated, info = env.step(act(obs))
                steps += 1
                if bool(info.get("success", False)):
                    success = True
                    break
                if terminated or truncated:
                    break
            successes += success
            lengths.append(steps)
    lo, hi = wilson_interval(successes, episodes)
    return {
        "success_rate": successes / episodes,
        "ci95": [lo, hi],
        "episodes": episodes,
        "successes": successes,
        "mean_length": float(np.mean(lengths)),
    }


def write_curves(curve: list[dict[str, Any]], out: Path, title: str, png: bool = True) -> None:
    """curves.json (every evaluation) and, with `png`, curves.png (success rate against env steps, with
    95% intervals)."""
    _atomic_write(out / "curves.json", json.dumps(curve, indent=2))
    if not curve or not png:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([c["env_steps"] for c in curve])
    rate = np.array([c["success_rate"] for c in curve])
    ci = np.array([c["ci95"] for c in curve]).T
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(steps, rate, yerr=np.abs(ci - rate), marker="o", capsize=3)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("success rate")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = out / f".curves.{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out / "curves.png")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
