"""CARP stage 2: the coarse-to-fine autoregressive transformer (`CFAP/` of Gong et al.'s code, after VAR).

The sequence is the K scales of action tokens, coarse to fine. Scale 1's tokens are the observation
feature (`cond`) plus learned start/position embeddings; scale k > 1's tokens embed the coarser scales'
quantised latent, downsampled to p_k. Attention is block-causal: a token sees its own scale and every
coarser one. `cond` also modulates every block through AdaLN (there is no cross-attention and no
classifier-free guidance). Inference predicts a whole scale per forward pass, K passes in all, with a
key/value cache so each pass only runs the new scale's tokens.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visuomotor.policies.carp.tokenizer import MultiScaleActionTokenizer


def block_causal_mask(tokens_per_scale: list[int]) -> Tensor:
    """(L, L) additive mask: 0 where the key's scale <= the query's scale, -inf elsewhere."""
    level = torch.cat([torch.full((n,), k) for k, n in enumerate(tokens_per_scale)])
    allowed = level.view(-1, 1) >= level.view(1, -1)
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability p while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class SelfAttention(nn.Module):
    """Multi-head attention with L2-normalised queries/keys and a learned per-head temperature (VAR's
    `attn_l2_norm`), q/v biases but no k bias, and an optional key/value cache for inference."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.log_scale = nn.Parameter(torch.full((1, heads, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(width, width)
        self.cache: tuple[Tensor, Tensor] | None = None
        self.use_cache = False

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        B, N, C = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q = F.normalize(q, dim=-1) * self.log_scale.clamp(max=math.log(100.0)).exp()
        k = F.normalize(k, dim=-1)
        if self.use_cache:
            if self.cache is not None:
                k = torch.cat([self.cache[0], k], dim=2)
                v = torch.cat([self.cache[1], v], dim=2)
            self.cache = (k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)  # (B, H, N, C/H)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class AdaLNBlock(nn.Module):
    """x += g1 * Attn(LN(x)(1 + s1) + b1);  x += g2 * FFN(LN(x)(1 + s2) + b2), modulation from cond."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        hidden = round(width * mlp_ratio)
        self.ffn = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.drop = DropPath(drop_path)

    def forward(self, x: Tensor, cond: Tensor, mask: Tensor | None) -> Tensor:
        g1, g2, s1, s2, b1, b2 = self.ada(cond).unsqueeze(1).chunk(6, dim=-1)  # each (B, 1, C)
        x = x + self.drop(self.attn(self.norm(x) * (1 + s1) + b1, mask) * g1)
        return x + self.drop(self.ffn(self.norm(x) * (1 + s2) + b2) * g2)


class CoarseToFineTransformer(nn.Module):
    def __init__(
        self,
        cond_dim: int,
        tokenizer: MultiScaleActionTokenizer,
        width: int = 64,
        depth: int = 8,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.A, self.scales = tokenizer.A, tokenizer.scales
        self.tokens_per_scale = tokenizer.tokens_per_scale
        L, C = tokenizer.seq_len, width
        self.cond_embed = nn.Linear(cond_dim, C)
        self.pos_start = nn.Parameter(torch.empty(1, self.A, C))
        self.word_embed = nn.Linear(tokenizer.D, C)
        self.level_embed = nn.Embedding(len(self.scales), C)
        self.pos_embed = nn.Parameter(torch.empty(1, L, C))
        rates = torch.linspace(0, drop_path, depth).tolist()  # stochastic depth rising with depth
        self.blocks = nn.ModuleList(AdaLNBlock(C, heads, mlp_ratio, r) for r in rates)
        self.head_norm = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))
        self.head = nn.Linear(C, tokenizer.V)
        level = torch.cat([torch.full((n,), k) for k, n in enumerate(self.tokens_per_scale)])
        self.register_buffer("level", level, persistent=False)
        self.register_buffer("mask", block_causal_mask(self.tokens_per_scale), persistent=False)
        self._init_weights(depth, C)

    def _init_weights(self, depth: int, width: int) -> None:
        # VAR/CARP initialisation: truncated normal std sqrt(1/3C); small head; near-zero AdaLN gains so
        # each block starts close to the identity; residual projections scaled down by sqrt(2 depth).
        std = math.sqrt(1 / (3 * width))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        for p in (self.pos_start, self.pos_embed):
            nn.init.trunc_normal_(p, std=std)
        with torch.no_grad():
            self.head.weight.mul_(0.02)
            for block in self.blocks:
                ada = block.ada[1].weight  # rows: g1, g2 | s1, s2, b1, b2
                ada[: 2 * width].mul_(1e-3)
                ada[2 * width :].mul_(0.5)
                block.attn.proj.weight.div_(math.sqrt(2 * depth))
                block.ffn[2].weight.div_(math.sqrt(2 * depth))
            self.head_ada[1].weight.mul_(0.5)

    # ------------------------------------------------------------------ pieces
    def first_scale(self, cond: Tensor) -> Tensor:
        """Scale-1 tokens (B, A, C): the observation feature plus start, level and position embeddings."""
        return cond.unsqueeze(1) + self.pos_start + self.level_embed.weight[0] + self.pos_embed[:, : self.A]

    def embed_inputs(self, x: Tensor, start: int) -> Tensor:
        """Code-space inputs (B, N, D) at sequence offset `start` -> tokens (B, N, C)."""
        end = start + x.shape[1]
        return self.word_embed(x) + self.level_embed(self.level[start:end]) + self.pos_embed[:, start:end]

    def logits(self, x: Tensor, cond: Tensor, mask: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, cond, mask)
        scale, shift = self.head_ada(cond).unsqueeze(1).chunk(2, dim=-1)
        return self.head(self.head_norm(x) * (1 + scale) + shift)  # (B, N, V)

    # ------------------------------------------------------------------ training
    def forward(self, cond_features: Tensor, inputs: Tensor) -> Tensor:
        """Teacher-forced logits (B, L, V) for every token: observation features (B, G) and the
        code-space inputs of scales 2..K (B, L - A, D)."""
        cond = self.cond_embed(cond_features)
        x = torch.cat([self.first_scale(cond), self.embed_inputs(inputs, self.A)], dim=1)
        return self.logits(x, cond, self.mask)

    # ------------------------------------------------------------------ inference
    def _pick(self, logits: Tensor, top_k: int, generator: torch.Generator | None) -> Tensor:
        if top_k <= 1:
            return logits.argmax(-1)
        values, idx = logits.topk(top_k, dim=-1)
        probs = values.softmax(-1)
        choice = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:2])
        return idx.gather(-1, choice.unsqueeze(-1)).squeeze(-1)

    def _set_cache(self, on: bool) -> None:
        for block in self.blocks:
            block.attn.use_cache, block.attn.cache = on, None

    @torch.no_grad()
    def generate(
        self,
        cond_features: Tensor,
        tokenizer: MultiScaleActionTokenizer,
        top_k: int = 1,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> list[Tensor]:
        """Per-scale indices [(B, A, p_k)], one forward pass per scale, coarse to fine.

        With the cache each pass runs only the new scale's tokens against cached keys/values; without it
        each pass reruns the whole prefix under the block-causal mask (same result, used to test the cache).
        """
        B = cond_features.shape[0]
        cond = self.cond_embed(cond_features)
        bounds = list(itertools.pairwise([0, *itertools.accumulate(self.tokens_per_scale)]))
        new = self.first_scale(cond)
        prefix: list[Tensor] = []
        indices: list[Tensor] = []
        f_hat = None
        self._set_cache(use_cache)
        try:
            for k, (start, end) in enumerate(bounds):
                if use_cache:
                    logits = self.logits(new, cond, None)  # the new scale sees itself and the cache
                else:
                    prefix.append(new)
                    logits = self.logits(torch.cat(prefix, 1), cond, self.mask[:end, :end])[:, start:]
                idx = self._pick(logits, top_k, generator).view(B, self.scales[k], self.A).transpose(1, 2)
                indices.append(idx)  # (B, A, p_k)
                if k + 1 < len(bounds):
                    h = tokenizer.scale_contribution(k, idx)
                    f_hat = h if f_hat is None else f_hat + h
                    new = self.embed_inputs(tokenizer.scale_inputs(f_hat, k + 1), end)
        finally:
            self._set_cache(False)
        return indices
