"""torch `Dataset` / `DataLoader` views of a `SequenceSampler`.

Two paths: `WindowDataset` yields one window per item (the classic map-style dataset, collated by the
DataLoader), and `make_dataloader(..., batched=True)` lets each worker gather a whole batch with one
`SequenceSampler.sample` call, which reads every needed chunk once per batch instead of once per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from visuomotor.datasets.sampler import SequenceSampler


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class WindowDataset(Dataset):
    """One window per item: key -> (K, ...) tensors."""

    def __init__(self, sampler: SequenceSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in to_torch(self.sampler.sample([i])).items()}


class _BatchDataset(Dataset):
    """Items are lists of window indices; each item is a whole batch."""

    def __init__(self, sampler: SequenceSampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        return to_torch(self.sampler.sample(np.asarray(idx)))


def make_dataloader(
    sampler: SequenceSampler,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = True,
    batched: bool = True,
    **kwargs: Any,
) -> DataLoader:
    """A DataLoader over the sampler's windows; `batched` uses the one-call-per-batch fast path."""
    generator = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        **kwargs,
    }
    if not batched:
        return DataLoader(
            WindowDataset(sampler),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            generator=generator,
            **common,
        )
    base = (
        RandomSampler(range(len(sampler)), generator=generator)
        if shuffle
        else SequentialSampler(range(len(sampler)))
    )
    return DataLoader(
        _BatchDataset(sampler), sampler=BatchSampler(base, batch_size, drop_last), batch_size=None, **common
    )
