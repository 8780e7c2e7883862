"""Pictures of PAD's frame prediction (architecture.md §PAD): PSNR of predicted against real future
frames, and a PNG strip per checkpoint (rows: windows; columns: the current frame, then the real and the
predicted frame at each future offset)."""

from __future__ import annotations

import numpy as np


def psnr(real: np.ndarray, predicted: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images (inf when identical)."""
    mse = np.mean((real.astype(np.float64) - predicted.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def strip(current: np.ndarray, real: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """One image: per window a row [current | real t+o1 | predicted t+o1 | ...] (first camera).
    current (B, H, W, 3); real and predicted (B, k, H, W, 3)."""
    rows = []
    for b in range(len(current)):
        cells = [current[b]]
        for k in range(real.shape[1]):
            cells += [real[b, k], predicted[b, k]]
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)
