"""A small convolutional autoencoder of camera frames, trained on the run's own store as PAD's first stage
(`autoencoder_steps`; architecture.md §PAD).

Why: the paper's DiT works on a frozen SD-VAE's latents, which cannot be downloaded here; on raw pixels
a token of the `cpu` DiT has to emit every pixel of its patch, and its predicted futures came out noisy
and no better than copying the current frame. A latent space as compact as SD-VAE's (4 channels, a few
times smaller per side) lets each token predict a handful of numbers, as in the paper. Like CARP's action
tokenizer, it trains in the same run and is saved in the same checkpoint, then stays frozen while the DiT
trains on its latents.

Latents are standardised per channel with running statistics gathered while the autoencoder trains (the
role of SD-VAE's scaling factor: diffusion noise of unit variance should be comparable to the signal).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STATS_MOMENTUM = 0.01
"""Weight of each batch in the running mean and std of the latents."""


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class FrameAutoencoder(nn.Module):
    """(N, 3, H, W) pixels in [-1, 1] <-> (N, channels, H / factor, W / factor) standardised latents."""

    def __init__(self, channels: int, factor: int, width: int) -> None:
        super().__init__()
        downs = int(math.log2(factor))
        self.channels, self.factor = channels, factor
        # The encoder runs on every frame of every window while the DiT trains, so it goes down at once
        # (strided convolutions, no full-resolution layer); the decoder only trains in its stage and
        # draws the pictures, so it can afford a layer per scale.
        encoder: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1)]
        for _ in range(downs - 1):
            encoder += [_norm(width), nn.SiLU(), nn.Conv2d(width, width, 4, stride=2, padding=1)]
        encoder += [_norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
        encoder += [_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 1)]
        decoder: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1)]
        decoder += [_norm(width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
        for _ in range(downs - 1):
            decoder += [
                _norm(width),
                nn.SiLU(),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(width, width, 3, padding=1),
            ]
        decoder += [_norm(width), nn.SiLU(), nn.ConvTranspose2d(width, 3, 4, stride=2, padding=1)]
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)
        self.register_buffer("latent_mean", torch.zeros(channels))
        self.register_buffer("latent_std", torch.ones(channels))

    def _shape(self, stats: Tensor) -> Tensor:
        return stats[None, :, None, None]

    def encode(self, x: Tensor) -> Tensor:
        return (self.encoder(x) - self._shape(self.latent_mean)) / self._shape(self.latent_std)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z * self._shape(self.latent_std) + self._shape(self.latent_mean))

    def reconstruction_loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """MSE of the reconstructed frames; updates the latents' running statistics (training only)."""
        raw = self.encoder(x)
        if self.training:
            with torch.no_grad():
                mean, std = raw.mean(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3)).clamp(min=1e-4)
                self.latent_mean.lerp_(mean, STATS_MOMENTUM)
                self.latent_std.lerp_(std, STATS_MOMENTUM)
        loss = F.mse_loss(self.decoder(raw), x)
        return loss, {"loss": loss.item(), "recon_mse": loss.item()}


class LearnedFrames:
    """PAD's frame space on a trained `FrameAutoencoder` (the policy's submodule, so it is checkpointed
    with the DiT). Encoding carries no gradient: the autoencoder is frozen once its stage is over."""

    def __init__(self, autoencoder: FrameAutoencoder) -> None:
        self.autoencoder = autoencoder

    @property
    def channels(self) -> int:
        return self.autoencoder.channels

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return h // self.autoencoder.factor, w // self.autoencoder.factor

    @torch.no_grad()
    def encode(self, x: Tensor, sample: bool) -> Tensor:
        return self.autoencoder.encode(x)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode(z)
