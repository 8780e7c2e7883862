"""PAD's network: a DiT with adaLN-Zero that denoises future frames and an action chunk together
(Guo et al. 2024; notes in architecture.md §PAD).

Pure tensor function. Inputs:
    images   (B, M, C_in, H, W) the noisy future frames and the clean current frame stacked on channels, as
                               PAD's channel-concatenated latents, for M token groups: M = 1 with every
                               camera stacked on channels too, or one group per camera, each cut into its
                               own patch tokens (the same patch embedding, a learned embedding per group)
    actions  (B, N_a, a_in)    action tokens: the noisy action chunk with the current proprio state
    t        (B,)              the one diffusion timestep shared by both modalities
    cond     (B, D)            task conditioning (already embedded), added to the timestep embedding
Outputs: the prediction for the future frames (B, M, C_out, H, W) (None when there are none) and the
noise predicted for the actions (B, N_a, a_out).

Image tokens cannot attend to action tokens (PAD's attention mask); action tokens attend to all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from visuomotor.policies.diffusion.model import SinusoidalPosEmb


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """Fixed sin-cos embedding (N, dim) of positions (N,), as in DiT/MAE."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions.double()[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """Fixed 2-D sin-cos embedding (grid_h * grid_w, dim): half the channels for rows, half for columns."""
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Attention + MLP, each modulated by adaLN-Zero (shift, scale, gate) from the conditioning."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor, mask: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        q, k, v = rearrange(
            self.qkv(modulate(self.norm1(x), shift1, scale1)), "b n (s h d) -> s b h n d", s=3, h=self.heads
        )
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # mask: True = may attend
        x = x + gate1[:, None] * self.proj(rearrange(attn, "b h n d -> b n (h d)"))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN (shift, scale) + LayerNorm + Linear, one per modality."""

    def __init__(self, dim: int, out: int, zero: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)
        if zero:  # DiT zero-initialises the image output; PAD's code keeps xavier for the action head
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class PadDiT(nn.Module):
    def __init__(
        self,
        *,
        image_hw: tuple[int, int],
        in_channels: int,
        out_channels: int,
        patch: int,
        action_in: int,
        action_out: int,
        n_action_tokens: int,
        dim: int,
        depth: int,
        heads: int,
        groups: int = 1,
    ) -> None:
        super().__init__()
        h, w = image_hw
        if h % patch or w % patch:
            raise ValueError(f"image {h}x{w} is not divisible by the patch size {patch}")
        self.patch, self.grid = patch, (h // patch, w // patch)
        self.out_channels = out_channels
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.action_embed = nn.Linear(action_in, dim)
        # every group's patches take the same 2-D position embedding; with several groups a learned one per
        # group tells the views apart (none for one group, so stacked checkpoints keep their weights)
        self.register_buffer(
            "image_pos", sincos_2d(dim, *self.grid).repeat(groups, 1)[None], persistent=False
        )
        self.group_embed = nn.Parameter(torch.randn(groups, 1, dim) * 0.02) if groups > 1 else None
        self.register_buffer(
            "action_pos", sincos_1d(dim, torch.arange(n_action_tokens))[None], persistent=False
        )
        self.time_embed = nn.Sequential(
            SinusoidalPosEmb(256), nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.blocks = nn.ModuleList(DiTBlock(dim, heads) for _ in range(depth))
        self.image_head = FinalLayer(dim, patch * patch * out_channels, zero=True) if out_channels else None
        self.action_head = FinalLayer(dim, action_out, zero=False)
        n_image = groups * self.grid[0] * self.grid[1]
        self.register_buffer("mask", attention_mask(n_image, n_action_tokens), persistent=False)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(dim, -1))

    def forward(
        self, images: Tensor, actions: Tensor, t: Tensor, cond: Tensor
    ) -> tuple[Tensor | None, Tensor]:
        M = images.shape[1]
        x_img = rearrange(self.patch_embed(images.flatten(0, 1)), "(b m) d h w -> b m (h w) d", m=M)
        if self.group_embed is not None:
            x_img = x_img + self.group_embed
        x_img = x_img.flatten(1, 2) + self.image_pos
        x_act = self.action_embed(actions) + self.action_pos
        n_image = x_img.shape[1]
        x = torch.cat([x_img, x_act], dim=1)
        c = self.time_embed(t) + cond
        for block in self.blocks:
            x = block(x, c, self.mask)
        eps_actions = self.action_head(x[:, n_image:], c)
        if self.image_head is None:
            return None, eps_actions
        patches = self.image_head(x[:, :n_image], c)
        gh, gw = self.grid
        p = self.patch
        eps_images = rearrange(
            patches, "b (m gh gw) (p q c) -> b m c (gh p) (gw q)", m=M, gh=gh, gw=gw, p=p, q=p
        )
        return eps_images, eps_actions


def attention_mask(n_image: int, n_action: int) -> Tensor:
    """(N, N) bool, True where a query token may attend to a key token: image queries see image keys
    only; action queries see everything."""
    n = n_image + n_action
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[:n_image, n_image:] = False
    return mask
