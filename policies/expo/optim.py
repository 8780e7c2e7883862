"""Adam and AdamW for the online learner, in a few tensor operations.

Why not torch.optim: building its first optimiser imports torch._dynamo (measured: about 10 s on the
shared 2-core machine while it was busy; 2.8 s once setup compiled the bytecode, 2026-12-03, with three
jobs on the 2 cores), which every online run, its resume and every test subprocess would pay, and its
step has more Python overhead than the tiny networks of the cpu preset take to
compute. The update is the same as torch.optim's defaults (bit-identical over 50 steps of a small MLP when
checked against torch.optim.Adam and AdamW on CPU) (Kingma & Ba 2015, bias-corrected; AdamW's weight decay
decoupled, Loshchilov & Hutter 2019, applied as p <- p (1 - lr wd) before the Adam step), and its whole
state is tensors, so a checkpoint is one safetensors file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class Adam:
    """Adam over a fixed list of parameters; `weight_decay` > 0 makes it AdamW. Each parameter keeps its
    own step count (a parameter without a gradient is skipped, as torch.optim does)."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(len(self.params), dtype=torch.int64)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        for i, (p, m, v) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True)):
            if p.grad is None:
                continue
            self.steps[i] += 1
            t = int(self.steps[i])
            if self.weight_decay:
                p.mul_(1.0 - self.lr * self.weight_decay)
            m.lerp_(p.grad, 1.0 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
            denom = (v.sqrt() / math.sqrt(1.0 - b2**t)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1.0 - b1**t))

    def state_tensors(self) -> dict[str, Tensor]:
        out = {"steps": self.steps.clone()}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True)):
            out[f"exp_avg.{i}"], out[f"exp_avg_sq.{i}"] = m.clone(), v.clone()
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        if len(state) != 1 + 2 * len(self.params):
            raise ValueError(f"optimiser state has {len(state)} tensors, expected {1 + 2 * len(self.params)}")
        self.steps.copy_(state["steps"])
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True)):
            m.copy_(state[f"exp_avg.{i}"])
            v.copy_(state[f"exp_avg_sq.{i}"])
