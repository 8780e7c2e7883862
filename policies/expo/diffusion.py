"""DDPM over single actions, as IDQL and EXPO do it (notes §1.1): T noise levels from the VP schedule,
epsilon prediction with the squared error summed over action dimensions, and an ancestral sampler that
clips to [-1, 1] after every step. A DDIM (eta = 0) sampler on the same schedule is the inference-time
alternative (`sampler=ddim`).

The noise model is any callable eps(x_t, t, cond); these functions hold no weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

EpsModel = Callable[[Tensor, Tensor, Tensor], Tensor]


def make_betas(kind: str, steps: int) -> Tensor:
    """beta_1..beta_T (float64) of a schedule: vp (b_min 0.1, b_max 10), cosine or linear."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    if kind == "vp":
        b_min, b_max = 0.1, 10.0
        alphas = torch.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
        return 1.0 - alphas
    if kind == "cosine":
        s = 0.008
        x = torch.arange(steps + 1, dtype=torch.float64) / steps
        bars = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - bars[1:] / bars[:-1]).clamp(max=0.999)
    if kind == "linear":
        return torch.linspace(1e-4, 2e-2, steps, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {kind!r}")


@dataclass(frozen=True)
class Schedule:
    """alpha_t, beta_t and alpha-bar_t, indexed 0..T-1 (float32)."""

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor

    @classmethod
    def make(cls, kind: str, steps: int) -> Schedule:
        betas = make_betas(kind, steps)
        alphas = 1.0 - betas
        return cls(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())

    @property
    def steps(self) -> int:
        return len(self.betas)


def ddpm_loss(eps_model: EpsModel, x0: Tensor, cond: Tensor, schedule: Schedule) -> Tensor:
    """mean over the batch of the squared epsilon error summed over action dimensions (notes §1.1)."""
    t = torch.randint(0, schedule.steps, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    bar = schedule.alpha_bars.to(x0.device)[t][:, None]
    x_t = bar.sqrt() * x0 + (1 - bar).sqrt() * noise
    return (eps_model(x_t, t, cond) - noise).pow(2).sum(-1).mean()


def sample(
    eps_model: EpsModel,
    cond: Tensor,
    action_dim: int,
    schedule: Schedule,
    sampler: str = "ddpm",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Actions (B, action_dim) in [-1, 1] for conditions cond (B, F), from N(0, I) through T steps."""
    B, device = cond.shape[0], cond.device
    x = torch.randn(B, action_dim, generator=generator, device=device)
    alphas, bars, betas = (v.to(device) for v in (schedule.alphas, schedule.alpha_bars, schedule.betas))
    for t in reversed(range(schedule.steps)):
        eps = eps_model(x, torch.full((B,), t, device=device, dtype=torch.long), cond)
        if sampler == "ddim":
            x0 = ((x - (1 - bars[t]).sqrt() * eps) / bars[t].sqrt()).clamp(-1, 1)
            prev = bars[t - 1] if t > 0 else torch.ones((), device=device)
            x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps if t > 0 else x0
            continue
        x = (x - (1 - alphas[t]) / (1 - bars[t]).sqrt() * eps) / alphas[t].sqrt()
        if t > 0:
            z = torch.randn(x.shape, generator=generator, device=device)
            x = x + betas[t].sqrt() * z
        x = x.clamp(-1, 1)
    return x
