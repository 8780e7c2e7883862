"""Mixup between demonstrations (`-o mixup=M`): while training, each window is mixed with its nearest
window from another demonstration of the same task, states and action chunk alike, with weight
lambda ~ U(0, M) on the partner.

A policy that classifies (CARP's codes) maps an unseen observation to the output of one demonstration;
the mixed windows put intermediate examples between them (docs/experiments.md, "Mixup"). Mixing raw
values is mixing normalised ones (the normalisation is affine), and relative-state differences are
computed afterwards from the mixed state.
"""

from __future__ import annotations

import torch
from torch import Tensor


def nearest_other_demonstrations(
    state: Tensor, episode: Tensor, task: Tensor, k: int = 1, block: int = 4096
) -> Tensor:
    """For each row of `state` (N, D): the indices (N, k) of the k nearest rows (Euclidean, nearest
    first) that belong to another episode of the same task, padded with -1 where the task has fewer.
    Distances are computed per task and in blocks of query rows, so N can be a whole training set."""
    partner = torch.full((len(state), k), -1, dtype=torch.long, device=state.device)
    for t in task.unique():
        rows = (task == t).nonzero().squeeze(1)
        for lo in range(0, len(rows), block):
            query = rows[lo : lo + block]
            dist = torch.cdist(state[query], state[rows])
            dist.masked_fill_(episode[query].view(-1, 1) == episode[rows].view(1, -1), float("inf"))
            best, order = dist.topk(min(k, len(rows)), dim=1, largest=False)
            found = torch.where(torch.isfinite(best), rows[order], -1)
            partner[query, : found.shape[1]] = found
    return partner


def mix_with_nearest(
    batch: dict[str, Tensor], state: Tensor, keys: tuple[str, ...], mixup: float
) -> dict[str, Tensor]:
    """`batch` with `keys` (the state keys and the action) of each window mixed with its partner's.
    `state` (B, D) is the normalised current state partners are searched in.

    Partners are searched within the batch, not over the whole training set: a window meets a different
    near neighbour in every batch. One fixed nearest partner over the training set, or one of the 8
    nearest drawn at every step, did no better (docs/experiments.md)."""
    episode = torch.as_tensor(batch["episode_index"], device=state.device)
    task = torch.as_tensor(batch.get("task_index", torch.zeros_like(episode)), device=state.device)
    partner = nearest_other_demonstrations(state, episode, task)[:, 0]
    lam = torch.rand(len(state), device=state.device) * mixup * (partner >= 0)
    partner = partner.clamp(min=0)
    mixed = dict(batch)
    for k in keys:
        x = batch[k].float()
        w = lam.view(-1, *([1] * (x.ndim - 1)))
        mixed[k] = (1 - w) * x + w * x[partner]
    return mixed
