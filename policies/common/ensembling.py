"""Temporal ensembling (ACT, Zhao et al. 2023; `-o temporal_ensemble=m`): a chunk is predicted at every
step, and the executed action is the weighted mean of what the recent chunks predicted for this step."""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor


class TemporalEnsemble:
    """The last chunks that still reach the current step, and their weighted mean for it."""

    def __init__(self, m: float) -> None:
        self.m = m
        self._chunks: deque[Tensor] = deque()

    def action(self, chunk: Tensor) -> Tensor:
        """This step's action (B, A), given the chunk (B, Ta, A) just predicted: the chunk made i steps
        ago offers its action i, and the offers are averaged with weights exp(-m j), j = 0 for the oldest.
        The last Ta chunks are kept: the ones that still reach this step."""
        self._chunks.append(chunk)
        while len(self._chunks) > chunk.shape[1]:
            self._chunks.popleft()
        offers = torch.stack(
            [c[:, age] for age, c in enumerate(reversed(self._chunks))][::-1]
        )  # (n, B, A), oldest first
        weights = torch.exp(-self.m * torch.arange(len(offers), dtype=offers.dtype, device=offers.device))
        return torch.einsum("n,nba->ba", weights / weights.sum(), offers)
