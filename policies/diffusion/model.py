"""1-D temporal U-Net with FiLM conditioning (Chi et al. 2023, §3.3; DP's `ConditionalUnet1D`).

Pure tensor function: noisy action chunk (B, T, A), diffusion step (B,), global conditioning (B, G) ->
predicted noise (B, T, A). Each residual block applies FiLM (a per-channel scale and bias predicted
from the diffusion-step embedding concatenated with the observation features) after its first conv.
"""

from __future__ import annotations

import itertools
import math

import torch
from einops import rearrange
from torch import Tensor, nn


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        args = t.float()[:, None] * freqs[None]  # (B, half)
        return torch.cat([args.sin(), args.cos()], dim=-1)  # (B, dim)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, cin: int, cout: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, cout),
            nn.Mish(),
        )


class FiLMResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(cin, cout, kernel_size, n_groups)
        self.block2 = Conv1dBlock(cout, cout, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.block1(x)  # (B, C, T)
        scale, bias = self.film(cond)[..., None].chunk(2, dim=1)  # (B, C, 1) each
        h = self.block2(scale * h + bias)
        return h + self.skip(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        step_embed_dim: int = 128,
        down_dims: tuple[int, ...] = (256, 512, 1024),
        kernel_size: int = 5,
        n_groups: int = 8,
    ) -> None:
        super().__init__()
        self.step_embed = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 4),
            nn.Mish(),
            nn.Linear(step_embed_dim * 4, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        dims = [action_dim, *down_dims]
        pairs = list(itertools.pairwise(dims))
        block = lambda cin, cout: FiLMResBlock(cin, cout, cond_dim, kernel_size, n_groups)  # noqa: E731
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            sample = nn.Conv1d(cout, cout, 3, stride=2, padding=1) if not last else nn.Identity()
            self.down.append(nn.ModuleList([block(cin, cout), block(cout, cout), sample]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        # Every up level upsamples: the down path halved T once per level but the last.
        for cin, cout in reversed(pairs[1:]):
            sample = nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(cout * 2, cin), block(cin, cin), sample]))
        self.final = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, sample: Tensor, timestep: Tensor, global_cond: Tensor) -> Tensor:
        x = rearrange(sample, "b t a -> b a t")  # (B, A, T)
        cond = torch.cat([self.step_embed(timestep), global_cond], dim=-1)  # (B, cond_dim)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = downsample(x)  # (B, C, T/2)
        for res in self.mid:
            x = res(x, cond)
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)  # (B, 2C, T)
            x = upsample(res2(res1(x, cond), cond))
        return rearrange(self.final(x), "b a t -> b t a")  # (B, T, A)
