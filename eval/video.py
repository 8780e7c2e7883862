"""Rollout videos: frames from the env's camera observations, outcome drawn in, written as mp4."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SUCCESS_RGB = (40, 200, 60)
FAILURE_RGB = (220, 40, 40)
PENDING_RGB = (128, 128, 128)


def upscale(frame: np.ndarray, min_size: int = 256) -> np.ndarray:
    """Nearest-neighbour integer upscaling so 64 px frames stay watchable (and stay crisp)."""
    h, w = frame.shape[:2]
    factor = max(1, -(-min_size // max(1, min(h, w))))
    if factor == 1:
        return frame
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)


def mark_frame(frame: np.ndarray, rgb: Sequence[int], width: int | None = None) -> np.ndarray:
    """Return a copy of `frame` (H, W, 3 uint8) with a coloured border."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    b = width if width is not None else max(2, min(h, w) // 32)
    color = np.asarray(rgb, dtype=np.uint8)
    out[:b], out[-b:], out[:, :b], out[:, -b:] = color, color, color, color
    return out


def compose_frame(images: Sequence[np.ndarray]) -> np.ndarray:
    """Several cameras' images (each H, W, 3) side by side."""
    if len(images) == 1:
        return images[0]
    h = max(im.shape[0] for im in images)
    padded = [np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0))) for im in images]
    return np.concatenate(padded, axis=1)


def write_episode_video(
    path: str | Path, frames: Sequence[np.ndarray], success: bool, success_step: int | None, fps: int
) -> Path:
    """Write an episode's frames as mp4, outcome drawn as a border.

    The border is grey until the step at which the task first succeeds, green from then on; a failed
    episode's frames all get a red border, so the outcome reads from any frame (and from the thumbnail).
    """
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    with imageio.get_writer(path, fps=max(1, int(fps)), codec="libx264", quality=7, macro_block_size=16) as w:
        for t, frame in enumerate(frames):
            big = upscale(frame)
            if not success:
                rgb = FAILURE_RGB
            elif success_step is not None and t >= success_step:
                rgb = SUCCESS_RGB
            else:
                rgb = PENDING_RGB
            w.append_data(mark_frame(big, rgb))
    return path
