"""Differences between parts of the low-dim state (goal minus hand, object minus hand) as extra inputs.

A policy trained on a few demonstrations has to interpolate to goal and object positions it has not seen;
the action it needs near a target is a function of where the target is *relative to the hand*. A network
can compute that difference from the absolute positions, but with ten demonstrations per task it fits
the absolute positions instead (measured on reach-v3, see BENCHMARKS.md). Giving it the difference as an
input makes the function it should learn the simplest one.

The differences are normalised like any other key; their statistics follow from those of the state
(min of a - b is min a - max b, and so on), so no extra pass over the store is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

DIFFERENCES_KEY = "state_differences"
"""Normaliser key of the differences (not an observation key: it never appears in a store)."""


def state_differences(state: Tensor, triples: Sequence[tuple[int, int, int]]) -> Tensor:
    """(..., D) raw state -> (..., sum of n) with state[a:a+n] - state[b:b+n] per (a, b, n) triple."""
    return torch.cat([state[..., a : a + n] - state[..., b : b + n] for a, b, n in triples], dim=-1)


def difference_stats(
    stats: Mapping[str, Mapping[str, Any]], state_keys: Sequence[str], triples: Sequence[tuple[int, int, int]]
) -> dict[str, list[float]]:
    """Statistics of the differences from those of the state keys: exact bounds for min/max, the mean
    of a difference, and a std that assumes the two parts independent."""

    def cat(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(stats[k][name], dtype=np.float64).reshape(-1) for k in state_keys])

    lo, hi, mean, std = cat("min"), cat("max"), cat("mean"), cat("std")

    def pick(x: np.ndarray, which: int) -> np.ndarray:
        return np.concatenate([x[t[which] : t[which] + t[2]] for t in triples])

    return {
        "min": (pick(lo, 0) - pick(hi, 1)).tolist(),
        "max": (pick(hi, 0) - pick(lo, 1)).tolist(),
        "mean": (pick(mean, 0) - pick(mean, 1)).tolist(),
        "std": np.sqrt(pick(std, 0) ** 2 + pick(std, 1) ** 2).tolist(),
    }
