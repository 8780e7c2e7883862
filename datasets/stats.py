"""Normalisation statistics (min, max, mean, std, q01, q99), computed streaming over an episode store.

Low-dim keys are per dimension; image keys per channel (pixel values in [0, 1], as the policies see
them). Two passes over the committed frames in blocks, so memory stays bounded for stores larger than


RAM: the first gives min/max/mean/std (Chan's parallel variance), the second a histogram over
[min, max] from which the quantiles are read. uint8 images use an exact 256-bin histogram in pass one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visuomotor.datasets.store import EpisodeStore, is_image_key
from visuomotor.errors import InvalidInputError

STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")
HIST_BINS = 4096


def _blocks(store: EpisodeStore, key: str, block_bytes: int = 64 << 20):
    frame_bytes = max(1, store.nbytes(key) // max(store.num_frames, 1))
    step = max(1, block_bytes // frame_bytes)
    for start in range(0, store.num_frames, step):
        rows = np.arange(start, min(start + step, store.num_frames))
        x = store.read_rows(key, rows)
        if is_image_key(key):
            yield x.reshape(-1, x.shape[-1])  # (T*H*W, C) channel-last
        else:
            yield x.reshape(len(rows), -1).astype(np.float64)


def _quantiles_from_hist(hist: np.ndarray, edges: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """hist (D, bins), edges (D, bins+1) -> (len(qs), D), linear within a bin."""
    cdf = np.cumsum(hist, axis=1) / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    out = np.empty((len(qs), hist.shape[0]))
    for d in range(hist.shape[0]):
        centers_cdf = np.concatenate([[0.0], cdf[d]])
        out[:, d] = np.interp(qs, centers_cdf, edges[d])
    return out


def compute_key_stats(store: EpisodeStore, key: str) -> dict[str, list[float]]:
    if store.num_frames == 0:
        raise InvalidInputError(f"{store.path}: cannot compute statistics of '{key}' on an empty store")
    if is_image_key(key) and store.dtype(key) == np.uint8:
        hist = np.zeros((store.shape(key)[-1], 256), dtype=np.int64)
        for x in _blocks(store, key):
            for c in range(x.shape[1]):
                hist[c] += np.bincount(x[:, c], minlength=256)
        values = np.arange(256) / 255.0
        n = hist.sum(axis=1)
        mean = (hist * values).sum(axis=1) / n
        var = (hist * (values[None] - mean[:, None]) ** 2).sum(axis=1) / n
        edges = np.broadcast_to((np.arange(257) - 0.5) / 255, (len(n), 257))  # bin v spans v/255 +- 0.5/255
        q = _quantiles_from_hist(hist, edges, (0.01, 0.99))
        nonzero = hist > 0
        lo = np.array([values[np.flatnonzero(r)[0]] for r in nonzero])
        hi = np.array([values[np.flatnonzero(r)[-1]] for r in nonzero])
        stats = {
            "min": lo,
            "max": hi,
            "mean": mean,
            "std": np.sqrt(var),
            "q01": np.clip(q[0], lo, hi),
            "q99": np.clip(q[1], lo, hi),
        }
        return {k: v.tolist() for k, v in stats.items()}
    # Pass 1: moments and range.
    count, mean, m2 = 0, None, None
    lo = hi = None
    for x in _blocks(store, key):
        n_b, mean_b = len(x), x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2, lo, hi = n_b, mean_b, m2_b, x.min(axis=0), x.max(axis=0)
        else:
            delta = mean_b - mean
            total = count + n_b
            mean = mean + delta * n_b / total
            m2 = m2 + m2_b + delta**2 * count * n_b / total
            count = total
            lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
    assert mean is not None and m2 is not None and lo is not None and hi is not None
    # Pass 2: histogram over [lo, hi] per dimension for the quantiles.
    width = np.where(hi > lo, hi - lo, 1.0)
    hist = np.zeros((len(lo), HIST_BINS), dtype=np.int64)
    for x in _blocks(store, key):
        b = np.clip(((x - lo) / width * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        for d in range(x.shape[1]):
            hist[d] += np.bincount(b[:, d], minlength=HIST_BINS)
    edges = lo[:, None] + width[:, None] * np.linspace(0, 1, HIST_BINS + 1)[None]
    q = _quantiles_from_hist(hist, edges, (0.01, 0.99))
    stats = {
        "min": lo,
        "max": hi,
        "mean": mean,
        "std": np.sqrt(m2 / count),
        "q01": np.clip(q[0], lo, hi),
        "q99": np.clip(q[1], lo, hi),
    }
    shape = store.shape(key)
    return {k: np.asarray(v).reshape(shape).tolist() for k, v in stats.items()}


def compute_stats(store: EpisodeStore, keys: list[str] | None = None, save: bool = True) -> dict[str, Any]:
    """Statistics of `keys` (default: every float and image key); saved into the store's attributes
    when it is writable and `save` is set."""
    if keys is None:
        keys = [k for k in store.keys if is_image_key(k) or store.dtype(k).kind == "f"]
    missing = [k for k in keys if k not in store.keys]
    if missing:
        raise InvalidInputError(
            f"{store.path}: no array(s) {missing} to compute statistics of; keys: {store.keys}"
        )
    stats = {key: compute_key_stats(store, key) for key in keys}
    if save and store.mode == "a":
        merged = dict(store.attrs.get("stats", {}))
        merged.update(stats)
        # Frames each key's statistics cover: an append makes exactly the recomputed keys current.
        frames = dict(store.attrs.get("stats_frames", {}) or {})
        frames.update({k: store.num_frames for k in keys})
        store.update_attrs({"stats": merged, "stats_frames": frames})
    return stats


def load_stats(store: EpisodeStore, keys: list[str]) -> dict[str, Any]:
    """Saved statistics when they are current for `keys`, else computed now (and saved if writable)."""
    saved = store.attrs.get("stats", {})
    frames = store.attrs.get("stats_frames", {})
    frames = frames if isinstance(frames, dict) else {}
    stale = [k for k in keys if k not in saved or frames.get(k) != store.num_frames]
    fresh = compute_stats(store, stale) if stale else {}
    return {k: fresh[k] if k in fresh else saved[k] for k in keys}
