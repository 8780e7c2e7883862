"""The spaces PAD's image branch can work in besides its own frame autoencoder's latents (the `cpu`
preset's, `autoencoder.py`): camera pixels (`autoencoder_steps=0`), or the latents of a frozen Stable
Diffusion VAE that the user has on disk (the paper's space: SD-VAE `sd-vae-ft-mse`, one sample of the
latent distribution times its scaling factor; architecture.md §PAD).

Neither is an `nn.Module` of the policy on purpose: the VAE is frozen and its weights are the user's, so
they stay out of the optimiser and out of the checkpoint, which records only `vae_path`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from visuomotor.datasets.images import to_float_chw
from visuomotor.errors import InvalidInputError
from visuomotor.policies.pad.config import vae_geometry


class PixelFrames:
    """Frames as they are: pixels in [-1, 1]."""

    channels = 3

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    def encode(self, x: Tensor, sample: bool) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z


class VaeFrames:
    """Frames as scaled latents of a frozen AutoencoderKL loaded from a local directory (safetensors only:
    nothing is unpickled). Training encodes with one sample of the latent distribution, as PAD's code
    does; inference with its mean, so a rollout depends on its seed only."""

    def __init__(self, path: str) -> None:
        from diffusers import AutoencoderKL

        self.geometry = vae_geometry(path)
        try:
            vae: Any = AutoencoderKL.from_pretrained(
                str(Path(path).expanduser()), local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as error:
            raise InvalidInputError(
                f"vae_path {path!r}: cannot load its AutoencoderKL weights (a safetensors file is needed): {error}"
            ) from error
        self.vae = vae.requires_grad_(False).eval()

    @property
    def channels(self) -> int:
        return self.geometry.channels

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return h // self.geometry.factor, w // self.geometry.factor

    @torch.no_grad()
    def encode(self, x: Tensor, sample: bool) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, channels, H / factor, W / factor), scaled."""
        dist = self.vae.to(x.device).encode(x).latent_dist
        return (dist.sample() if sample else dist.mode()) * self.geometry.scaling

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Scaled latents -> (N, 3, H, W), about [-1, 1]."""
        return self.vae.to(z.device).decode(z / self.geometry.scaling).sample


def from_uint8(frames: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]: the image branch's pixels."""
    return to_float_chw(frames) * 2 - 1


def to_uint8(pixels: Tensor) -> Tensor:
    """float (..., 3, H, W), about [-1, 1] (decoded or predicted) -> uint8 (..., H, W, 3)."""
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)


def frame_space(vae_path: str | None) -> PixelFrames | VaeFrames:
    return VaeFrames(vae_path) if vae_path else PixelFrames()
