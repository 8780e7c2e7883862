"""Per-key normalisation as an `nn.Module`, so the statistics travel inside a checkpoint.

Modes: "min_max" maps [min, max] to [-1, 1] (Diffusion Policy's `limits`; dimensions whose range is
below `RANGE_EPS` map to 0 instead of dividing by ~0), "mean_std" standardises, "identity" passes
through. Image keys are normalised per channel on float CHW tensors in [0, 1] (see `images.py`); their
statistics have shape (C,). Every buffer is a plain tensor, so `safetensors` saves and loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from visuomotor.datasets.store import is_image_key

MODES = ("min_max", "mean_std", "identity")
RANGE_EPS = 1e-4
STD_EPS = 1e-6


class Normalizer(nn.Module):
    """`normalize(batch)` / `unnormalize(key, x)` for a fixed set of keys.

    Build from statistics with `from_stats`; build an empty one with the same modes and shapes (then
    `load_state_dict`) when loading a checkpoint.
    """

    def __init__(self, modes: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        for key, mode in modes.items():
            if mode not in MODES:
                raise ValueError(f"normalisation mode for '{key}' must be one of {MODES}, got '{mode}'")
            if key not in shapes:
                raise ValueError(f"no statistics shape given for '{key}'")
        self.modes = dict(modes)
        self._names = {key: f"k{i}" for i, key in enumerate(sorted(modes))}
        for key in self.modes:
            shape = tuple(shapes[key])
            self.register_buffer(f"{self._names[key]}_scale", torch.ones(shape))
            self.register_buffer(f"{self._names[key]}_offset", torch.zeros(shape))

    @classmethod
    def from_stats(cls, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, str]) -> Normalizer:
        shapes = {}
        for key in modes:
            if modes[key] != "identity" and key not in stats:
                raise KeyError(f"no statistics for '{key}'; have {sorted(stats)}")
            shapes[key] = tuple(torch.as_tensor(stats[key]["mean"]).shape) if key in stats else ()
        norm = cls(modes, shapes)
        for key, mode in modes.items():
            scale, offset = _affine(mode, stats.get(key, {}))
            norm.scale(key).copy_(scale)
            norm.offset(key).copy_(offset)
        return norm

    def scale(self, key: str) -> Tensor:
        return getattr(self, f"{self._names[key]}_scale")

    def offset(self, key: str) -> Tensor:
        return getattr(self, f"{self._names[key]}_offset")

    def _params(self, key: str, x: Tensor) -> tuple[Tensor, Tensor]:
        scale, offset = self.scale(key), self.offset(key)
        if is_image_key(key) and scale.ndim == 1:
            scale, offset = scale[:, None, None], offset[:, None, None]  # (C, 1, 1) for (..., C, H, W)
        return scale.to(x.dtype), offset.to(x.dtype)

    def normalize_key(self, key: str, x: Tensor) -> Tensor:
        scale, offset = self._params(key, x)
        return x * scale + offset

    def unnormalize(self, key: str, x: Tensor) -> Tensor:
        scale, offset = self._params(key, x)
        return (x - offset) / scale

    def normalize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A copy of `batch` with every key this normaliser knows normalised; other keys untouched."""
        return {k: self.normalize_key(k, v) if k in self.modes else v for k, v in batch.items()}

    def save(self, path: str | Path) -> None:
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path))

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_file(str(path)))


def _affine(mode: str, stats: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """(scale, offset) with normalised = x * scale + offset."""
    if mode == "identity":
        shape = torch.as_tensor(stats["mean"]).shape if stats else ()
        return torch.ones(shape), torch.zeros(shape)
    if mode == "min_max":
        lo = torch.as_tensor(stats["min"], dtype=torch.float64)
        hi = torch.as_tensor(stats["max"], dtype=torch.float64)
        rng = hi - lo
        flat = rng < RANGE_EPS
        scale = torch.where(flat, torch.ones_like(rng), 2.0 / torch.where(flat, torch.ones_like(rng), rng))
        offset = torch.where(flat, -(hi + lo) / 2, -1.0 - lo * scale)
        return scale.float(), offset.float()
    mean = torch.as_tensor(stats["mean"], dtype=torch.float64)
    std = torch.as_tensor(stats["std"], dtype=torch.float64).clamp_min(STD_EPS)
    return (1.0 / std).float(), (-mean / std).float()
