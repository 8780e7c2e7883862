"""CARP stage 1: the multi-scale action tokenizer (Gong et al. 2024, `svqvae/` and `MSAT/` of their code).

One small 1-D VQ-VAE per action dimension, each with its own codebook, quantised VAR-style: the latent of
length n = horizon / 4 is approximated scale by scale (lengths 1, 2, 3, 4) by residual quantisation, so
the coarse scales hold the trend of the chunk and the fine ones its detail.

All A per-dimension VAEs run as one network: every conv is grouped with `groups=A` and every GroupNorm
has one group per dimension, so the dimensions stay exactly independent (as A separate models would be)
while costing one kernel launch instead of A. Channels are laid out dimension-major: (B, A*C, T).

Shapes: actions (B, T, A); latents (B, A, D, n); indices per scale (B, A, p_k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv(dims: int, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Conv1d:
    return nn.Conv1d(dims * cin, dims * cout, kernel, stride=stride, padding=padding, groups=dims)


class _ConvBlock(nn.Module):
    """GN -> SiLU -> conv -> GN -> SiLU -> conv, with a 1x1 shortcut when the width changes."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(dims, dims * cin),
            nn.SiLU(),
            _conv(dims, cin, cout),
            nn.GroupNorm(dims, dims * cout),
            nn.SiLU(),
            _conv(dims, cout, cout),
        )
        self.shortcut = _conv(dims, cin, cout, 1, padding=0) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.net(x)


class _Downsample(nn.Module):
    """Halve the length: pad one step at the end, then a stride-2 conv (CARP pads the bottom by 1)."""

    def __init__(self, dims: int, ch: int) -> None:
        super().__init__()
        self.conv = _conv(dims, ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1)))


class Encoder(nn.Module):
    def __init__(self, dims: int, widths: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(dims, 1, widths[0] // 2 or 1)]
        cin = widths[0] // 2 or 1
        for w in widths:
            layers += [_ConvBlock(dims, cin, w), _Downsample(dims, w), _ConvBlock(dims, w, w)]
            cin = w
        layers += [nn.GroupNorm(dims, dims * cin), nn.SiLU(), _conv(dims, cin, latent_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Mirror of the encoder; upsampling by transposed conv; no norm/activation before the output."""

    def __init__(self, dims: int, widths: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        rev = widths[::-1]
        outs = (*rev[1:], widths[0] // 2 or 1)
        layers: list[nn.Module] = [_conv(dims, latent_dim, rev[0])]
        for w, nxt in zip(rev, outs, strict=True):
            layers += [
                _ConvBlock(dims, w, w),
                nn.ConvTranspose1d(dims * w, dims * w, 3, stride=2, padding=1, output_padding=1, groups=dims),
                _ConvBlock(dims, w, nxt),
            ]
        layers.append(_conv(dims, outs[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MultiScaleActionTokenizer(nn.Module):
    """A per-dimension VQ-VAEs with multi-scale residual quantisation (VAR's `VectorQuantizer2`)."""

    def __init__(
        self,
        action_dim: int,
        horizon: int,
        scales: tuple[int, ...] = (1, 2, 3, 4),
        codebook_size: int = 512,
        code_dim: int = 8,
        widths: tuple[int, ...] = (4, 8),
        phi_mix: float = 0.5,
        commitment: float = 0.25,
        cosine: bool = True,
    ) -> None:
        super().__init__()
        self.A, self.horizon, self.scales = action_dim, horizon, tuple(scales)
        self.latent_len = horizon // 2 ** len(widths)
        if horizon % 2 ** len(widths) or self.scales[-1] != self.latent_len:
            raise ValueError(
                f"the last scale must equal the latent length horizon / 2^{len(widths)} = "
                f"{horizon / 2 ** len(widths):g}; got scales {list(self.scales)} for horizon {horizon}"
            )
        if list(self.scales) != sorted(self.scales) or self.scales[0] < 1:
            raise ValueError(f"scales must be increasing and >= 1, got {list(self.scales)}")
        self.V, self.D = codebook_size, code_dim
        self.phi_mix, self.commitment, self.cosine = phi_mix, commitment, cosine
        A = action_dim
        self.encoder = Encoder(A, tuple(widths), code_dim)
        self.decoder = Decoder(A, tuple(widths), code_dim)
        self.quant_conv = _conv(A, code_dim, code_dim)
        self.post_quant_conv = _conv(A, code_dim, code_dim)
        # Phi_k: one refiner conv per scale, mixed half-half with its input (VAR's quant_resi = 0.5).
        self.phis = nn.ModuleList(_conv(A, code_dim, code_dim) for _ in self.scales)
        self.codebook = nn.Parameter(torch.empty(A, codebook_size, code_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        # CARP: xavier-normal convs with gain 0.5; codebook uniform in +-(D^-0.5 / 36).
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.xavier_normal_(m.weight, gain=0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        bound = self.D**-0.5 / 36
        nn.init.uniform_(self.codebook, -bound, bound)

    @property
    def tokens_per_scale(self) -> list[int]:
        return [p * self.A for p in self.scales]

    @property
    def seq_len(self) -> int:
        return sum(self.tokens_per_scale)

    # ------------------------------------------------------------------ pieces
    def encode(self, actions: Tensor) -> Tensor:
        """Normalised actions (B, T, A) -> latents (B, A, D, n)."""
        B, steps, dims = actions.shape
        if steps != self.horizon or dims != self.A:
            raise ValueError(
                f"tokenizer expects chunks of shape (B, {self.horizon}, {self.A}), got {tuple(actions.shape)}"
            )
        z = self.quant_conv(self.encoder(actions.transpose(1, 2)))  # (B, A*D, n)
        return z.view(B, self.A, self.D, -1)

    def decode_latent(self, f_hat: Tensor) -> Tensor:
        """Latents (B, A, D, n) -> actions (B, T, A)."""
        B = f_hat.shape[0]
        x = self.decoder(self.post_quant_conv(f_hat.reshape(B, self.A * self.D, -1)))  # (B, A, T)
        return x.transpose(1, 2)

    def lookup(self, rest: Tensor) -> Tensor:
        """Nearest code per position and dimension: (B, A, D, p) -> indices (B, A, p).

        Cosine similarity by default (CARP's `vqnorm`); the residual update below still uses the raw code
        vectors, as CARP does, so stage 1 and stage 2 must agree on this flag (it lives in the config).
        """
        z = rest.permute(0, 1, 3, 2)  # (B, A, p, D)
        if self.cosine:
            sim = torch.einsum("bapd,avd->bapv", F.normalize(z, dim=-1), F.normalize(self.codebook, dim=-1))
            return sim.argmax(-1)
        dist = (z.unsqueeze(-2) - self.codebook.unsqueeze(0).unsqueeze(2)).pow(2).sum(-1)  # (B, A, p, V)
        return dist.argmin(-1)

    def embed(self, idx: Tensor) -> Tensor:
        """Indices (B, A, p) -> code vectors (B, A, D, p), each dimension from its own codebook."""
        dims = torch.arange(self.A, device=idx.device).view(1, -1, 1)
        return self.codebook[dims, idx].permute(0, 1, 3, 2)

    def scale_contribution(self, k: int, idx: Tensor) -> Tensor:
        """What the codes of scale k add to the latent: upsample to length n, then refine with Phi_k."""
        B = idx.shape[0]
        h = self.embed(idx)  # (B, A, D, p_k)
        if self.scales[k] != self.latent_len:  # bicubic, as VAR; a (n x 1) image since torch has no 1-D cubic
            h = F.interpolate(
                h.reshape(B * self.A, self.D, -1, 1), size=(self.latent_len, 1), mode="bicubic"
            ).view(B, self.A, self.D, self.latent_len)
        refined = self.phis[k](h.reshape(B, self.A * self.D, -1)).view_as(h)
        return (1 - self.phi_mix) * h + self.phi_mix * refined

    def downsample(self, f: Tensor, length: int) -> Tensor:
        """Area-interpolate latents (B, A, D, n) to `length` positions."""
        if length == f.shape[-1]:
            return f
        B = f.shape[0]
        return F.adaptive_avg_pool1d(f.reshape(B, self.A * self.D, -1), length).view(
            B, self.A, self.D, length
        )

    # ------------------------------------------------------------------ quantisation
    def _residual_quantize(self, f: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Indices of every scale and the cumulative quantised latent after each scale, for latents f."""
        f_hat = torch.zeros_like(f)
        rest = f.detach().clone()
        indices: list[Tensor] = []
        cumulative: list[Tensor] = []
        for k, p in enumerate(self.scales):
            idx = self.lookup(self.downsample(rest, p))
            h = self.scale_contribution(k, idx)
            f_hat = f_hat + h
            rest = rest - h.detach()
            indices.append(idx)
            cumulative.append(f_hat)
        return indices, cumulative

    def quantize(self, f: Tensor) -> tuple[Tensor, list[Tensor], Tensor, Tensor]:
        """Multi-scale residual quantisation of latents f (B, A, D, n).

        Returns f_hat (straight-through: values of the quantised latent, gradients of f), the indices of
        every scale, the final residual f - f_hat, and the VQ loss (codebook + 0.25 x commitment, averaged
        over scales on the cumulative f_hat, as CARP).
        """
        indices, cumulative = self._residual_quantize(f)
        vq_loss = f.new_zeros(())
        for f_hat in cumulative:
            vq_loss = (
                vq_loss + self.commitment * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f.detach())
            )
        vq_loss = vq_loss / len(self.scales)
        f_hat = cumulative[-1]
        residual = f.detach() - f_hat.detach()
        f_hat_ste = (f_hat - f).detach() + f
        return f_hat_ste, indices, residual, vq_loss

    def forward(self, actions: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Stage-1 pass: (reconstruction (B, T, A), VQ loss, indices per scale)."""
        f_hat, indices, _, vq_loss = self.quantize(self.encode(actions))
        return self.decode_latent(f_hat), vq_loss, indices

    # ------------------------------------------------------------------ tokens <-> indices
    def to_sequence(self, indices: list[Tensor]) -> Tensor:
        """Per-scale indices [(B, A, p_k)] -> token sequence (B, L), position-major and dimension-minor
        (token pos * A + dim), scales coarse to fine."""
        return torch.cat([idx.transpose(1, 2).flatten(1) for idx in indices], dim=1)

    def from_sequence(self, tokens: Tensor) -> list[Tensor]:
        """Token sequence (B, L) -> per-scale indices [(B, A, p_k)]."""
        parts = torch.split(tokens, self.tokens_per_scale, dim=1)
        return [
            part.view(tokens.shape[0], p, self.A).transpose(1, 2)
            for part, p in zip(parts, self.scales, strict=True)
        ]

    def indices_to_latent(self, indices: list[Tensor]) -> Tensor:
        """Sum of every scale's contribution: the quantised latent f_hat (B, A, D, n)."""
        return torch.stack([self.scale_contribution(k, idx) for k, idx in enumerate(indices)]).sum(0)

    def decode_indices(self, indices: list[Tensor]) -> Tensor:
        """Per-scale indices -> normalised actions (B, T, A)."""
        return self.decode_latent(self.indices_to_latent(indices))

    def scale_inputs(self, f_hat: Tensor, k: int) -> Tensor:
        """Stage-2 input for scale k >= 1: the cumulative f_hat of the coarser scales, area-downsampled
        to p_k, as tokens (B, p_k * A, D) in sequence order."""
        x = self.downsample(f_hat, self.scales[k])  # (B, A, D, p_k)
        return x.permute(0, 3, 1, 2).flatten(1, 2)

    @torch.no_grad()
    def teacher_forcing(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Targets and inputs of stage 2 for ground-truth chunks: tokens (B, L) and the code-space
        inputs of scales 2..K (B, L - p_1 * A, D)."""
        indices, cumulative = self._residual_quantize(self.encode(actions))
        inputs = [self.scale_inputs(cumulative[k - 1], k) for k in range(1, len(self.scales))]
        return self.to_sequence(indices), torch.cat(inputs, dim=1)
