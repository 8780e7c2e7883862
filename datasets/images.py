"""Image helpers: uint8 HWC frames to float CHW tensors, resize, random and centre crops, random shifts."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def to_float_chw(images: Tensor) -> Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images (..., H, W, C), got {images.dtype}")
    return rearrange(images, "... h w c -> ... c h w").float().div_(255.0)


def _flat(images: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    lead = tuple(images.shape[:-3])
    return images.reshape(-1, *images.shape[-3:]), lead


def resize(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """(..., C, H, W) -> (..., C, h, w), bilinear with antialiasing."""
    import torchvision.transforms.v2.functional as TF  # heavy import (seconds), only when resizing

    size = (size, size) if isinstance(size, int) else size
    flat, lead = _flat(images)
    out = TF.resize(flat, list(size), antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def center_crop(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """(..., C, H, W) -> (..., C, h, w) from the centre."""
    h, w = (size, size) if isinstance(size, int) else size
    H, W = images.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} larger than image {H}x{W}")
    top, left = (H - h) // 2, (W - w) // 2
    return images[..., top : top + h, left : left + w]


def random_crop(
    images: Tensor, size: int | tuple[int, int], generator: torch.Generator | None = None
) -> Tensor:
    """(B, ..., C, H, W) -> (B, ..., C, h, w), one random offset per batch element (shared over the
    time axis, so an observation history stays aligned)."""
    h, w = (size, size) if isinstance(size, int) else size
    H, W = images.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {h}x{w} larger than image {H}x{W}")
    B = images.shape[0]
    tops = torch.randint(0, H - h + 1, (B,), generator=generator).tolist()
    lefts = torch.randint(0, W - w + 1, (B,), generator=generator).tolist()
    return torch.stack(
        [img[..., t : t + h, left : left + w] for img, t, left in zip(images, tops, lefts, strict=True)]
    )


def random_shift(images: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, ..., C, H, W) -> the same shape, each batch element shifted by up to `pad` pixels in each
    direction with the border pixels repeated (DrQ's augmentation, Kostrikov et al. 2020: pad, then a
    random crop back to the original size); one offset per batch element, shared over the time axis."""
    if pad < 0:
        raise ValueError(f"shift padding must be >= 0, got {pad}")
    if pad == 0:
        return images
    H, W = images.shape[-2:]
    flat, lead = _flat(images)
    padded = torch.nn.functional.pad(flat, (pad, pad, pad, pad), mode="replicate")
    padded = padded.reshape(*lead, *padded.shape[-3:])
    return random_crop(padded, (H, W), generator)
