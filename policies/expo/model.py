"""EXPO's networks, pure `nn.Module`s (tensors in, tensors out): the IDQL-style noise predictor of the
base policy, the tanh-Gaussian edit policy / actor, and the LayerNorm critic ensemble (notes §1.1-1.4).

The ensemble keeps its members' weights stacked, (E, in, out), and runs them with one batched matmul: on
a CPU this costs about as much as one critic of E times the width, instead of E separate small matmuls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""The clip of the tanh-Gaussian's log std (notes §1.2)."""


class FourierFeatures(nn.Module):
    """Learnable Fourier features of the diffusion step (IDQL): cos and sin of 2 pi t W, W ~ N(0, 0.2)."""

    def __init__(self, dim: int, std: float = 0.2) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(dim // 2, 1) * std)

    def forward(self, t: Tensor) -> Tensor:
        f = 2 * math.pi * t.float()[:, None] @ self.kernel.T  # (B, dim/2); t is the step index
        return torch.cat([f.cos(), f.sin()], dim=-1)


class ResidualBlock(nn.Module):
    """dropout -> LayerNorm -> Dense(expansion * width) -> swish -> Dense(width), plus the skip."""

    def __init__(self, width: int, expansion: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, expansion * width)
        self.fc2 = nn.Linear(expansion * width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(F.silu(self.fc1(self.norm(self.dropout(x)))))


class NoisePredictor(nn.Module):
    """epsilon(a_t, s, t): concat[a_t, s, time MLP(Fourier(t))] -> Dense -> residual blocks -> swish ->
    Dense(|A|) (IDQL's MLPResNet, notes §1.1)."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        width: int,
        blocks: int,
        expansion: int,
        time_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.time = nn.Sequential(
            FourierFeatures(time_dim),
            nn.Linear(time_dim, 2 * time_dim),
            nn.SiLU(),
            nn.Linear(2 * time_dim, 2 * time_dim),
        )
        self.inp = nn.Linear(action_dim + cond_dim + 2 * time_dim, width)
        self.blocks = nn.ModuleList([ResidualBlock(width, expansion, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, action_dim)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        h = self.inp(torch.cat([x, cond, self.time(t)], dim=-1))
        for block in self.blocks:
            h = block(h)
        return self.out(F.silu(h))


def relu_mlp(in_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Linear + ReLU layers, the activation after the last one too (jaxrl's MLP with activate_final)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers)


def tanh_log_det(z: Tensor) -> Tensor:
    """log(1 - tanh(z)^2) summed over the last axis, in a form that stays finite for large |z|."""
    return (2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))).sum(-1)


class TanhGaussian(nn.Module):
    """A tanh-squashed diagonal Gaussian on an MLP of its input: u in (-1, 1)^|A| with log pi(u)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], action_dim: int) -> None:
        super().__init__()
        self.trunk = relu_mlp(in_dim, hidden)
        self.mean = nn.Linear(hidden[-1], action_dim)
        self.log_std = nn.Linear(hidden[-1], action_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log std) of the Gaussian before the tanh."""
        h = self.trunk(x)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A reparameterised sample u = tanh(mean + std * eps) and its log-density (B,)."""
        mean, log_std = self(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + log_std.exp() * eps
        gauss = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.tanh(z), gauss - tanh_log_det(z)

    def mode(self, x: Tensor) -> Tensor:
        return torch.tanh(self(x)[0])


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to (E, B, in) at once."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with a separate affine per member."""

    def __init__(self, members: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


class CriticEnsemble(nn.Module):
    """E critics Q_i(s, a), each an MLP with LayerNorm after every hidden layer and ReLU (RLPD's
    critic, notes §1.4). `forward` returns (E, B)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], members: int) -> None:
        super().__init__()
        self.members = members
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [EnsembleLinear(members, in_dim, size), EnsembleLayerNorm(members, size), nn.ReLU()]
            in_dim = size
        self.body = nn.Sequential(*layers)
        self.head = EnsembleLinear(members, in_dim, 1)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([state, action], dim=-1)
        x = x.unsqueeze(0).expand(self.members, *x.shape)
        return self.head(self.body(x)).squeeze(-1)


def subset_min(q: Tensor, k: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Minimum over a random subset of k members of per-member values q (E, ...): (values, subset).
    One subset per call, as the official code's `subsample_ensemble`."""
    subset = torch.randperm(q.shape[0], generator=generator, device=q.device)[:k]
    return q[subset].min(0).values, subset


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, parameters only."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)
