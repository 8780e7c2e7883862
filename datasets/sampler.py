"""Sequence windows over an episode store, with Diffusion Policy's padding semantics.

A window is anchored at a frame t of an episode: the current observation. Each key reads the frames at
t + offset for its offsets; observation keys default to the last To frames (t-To+1 .. t) and the action
key to `horizon` frames starting with the first observation, as in Diffusion Policy (its
`SequenceSampler` with `key_first_k`). Offsets can be set per key, e.g. PAD's future frames at t+4, t+8,
t+12. Windows may run over the episode edges by `pad_before` frames at the start and `pad_after` at the
end (defaults To-1 and Ta-1); such frames repeat the first or last frame of the episode and are marked in
`<key>_is_pad`.

Only the frames each key needs are read; low-dimensional keys (and images, while they fit in the cache
budget) are held in memory after the first read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from visuomotor.datasets.store import EpisodeStore, is_image_key
from visuomotor.errors import MissingKeyError

DEFAULT_CACHE_BYTES = 2 << 30


@dataclass(frozen=True)
class WindowSpec:
    """Which frames a window holds, relative to its anchor frame t (the current observation)."""

    n_obs_steps: int = 2
    """To: observation history length; observation keys read frames t-To+1 .. t."""
    horizon: int = 16
    """Ta: length of the action window, which starts at the first observation frame t-To+1."""
    obs_keys: tuple[str, ...] = ("observation.state",)
    """Observation keys to read."""
    action_key: str | None = "action"
    """The action key (None for observation-only windows)."""
    key_offsets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Per-key frame offsets relative to t, overriding the defaults (e.g. (0, 4, 8, 12) for PAD)."""
    pad_before: int | None = None
    """Frames a window may start before the episode; default To-1."""
    pad_after: int | None = None
    """Frames the action window may run past the episode end; default Ta-1."""

    def __post_init__(self) -> None:
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.pad_before is not None and self.pad_before < 0:
            raise ValueError(f"pad_before must be >= 0, got {self.pad_before}")
        if self.pad_after is not None and self.pad_after < 0:
            raise ValueError(f"pad_after must be >= 0, got {self.pad_after}")
        for key, offs in self.key_offsets.items():
            if len(offs) == 0:
                raise ValueError(f"key_offsets['{key}'] is empty")

    @property
    def keys(self) -> tuple[str, ...]:
        extra = tuple(k for k in self.key_offsets if k not in self.obs_keys and k != self.action_key)
        action = (self.action_key,) if self.action_key else ()
        return (*self.obs_keys, *action, *extra)

    def offsets(self, key: str) -> np.ndarray:
        if key in self.key_offsets:
            return np.asarray(self.key_offsets[key], dtype=np.int64)
        first = -(self.n_obs_steps - 1)
        if key == self.action_key:
            return np.arange(first, first + self.horizon, dtype=np.int64)
        return np.arange(first, 1, dtype=np.int64)

    def anchor_range(self, length: int) -> tuple[int, int]:
        """Anchors [lo, hi] of an episode of `length` frames (Diffusion Policy's `create_indices`)."""
        pad_before = self.n_obs_steps - 1 if self.pad_before is None else self.pad_before
        pad_after = self.horizon - 1 if self.pad_after is None else self.pad_after
        # Window start s = t - (To-1) ranges over [-pad_before, length - horizon + pad_after].
        lo = -pad_before + self.n_obs_steps - 1
        hi = length - self.horizon + pad_after + self.n_obs_steps - 1
        return max(lo, 0), hi


def split_episodes(n_episodes: int, val_ratio: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Episode-level train/val split: whole episodes go to one side. At least one train episode."""
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_val = min(round(n_episodes * val_ratio), n_episodes - 1)
    if val_ratio > 0 and n_val == 0 and n_episodes > 1:
        n_val = 1
    n_val = max(n_val, 0)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class SequenceSampler:
    """Random-access windows over chosen episodes of a store; `sample` gathers a whole batch at once."""

    def __init__(
        self,
        store: EpisodeStore,
        spec: WindowSpec,
        episodes: Sequence[int] | np.ndarray | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.store = store
        self.spec = spec
        for key in spec.keys:
            if key not in store.keys:
                raise MissingKeyError(
                    f"{store.path}: window key '{key}' is not in the store; it has {store.keys}"
                )
        self.episodes = np.arange(store.num_episodes) if episodes is None else np.asarray(episodes, np.int64)
        if len(self.episodes) and (self.episodes.min() < 0 or self.episodes.max() >= store.num_episodes):
            raise IndexError(f"{store.path}: episode index out of range [0, {store.num_episodes})")
        starts, lengths = store.episode_starts, store.episode_lengths
        anchors, ep_of = [], []
        for e in self.episodes:
            lo, hi = spec.anchor_range(int(lengths[e]))
            if hi >= lo:
                anchors.append(np.arange(lo, hi + 1))
                ep_of.append(np.full(hi - lo + 1, e))
        self._anchor = np.concatenate(anchors) if anchors else np.zeros(0, np.int64)
        self._episode = np.concatenate(ep_of) if ep_of else np.zeros(0, np.int64)
        self._start = starts
        self._length = lengths
        self._offsets = {k: spec.offsets(k) for k in spec.keys}
        self._task_index = {t: i for i, t in enumerate(store.tasks)}
        self._episode_task = np.array([self._task_index[store.task(i)] for i in range(store.num_episodes)])
        # Cache whole arrays that fit: low-dim keys first (tiny), then images by size.
        self._cache: dict[str, np.ndarray] = {}
        self._cache_budget = cache_bytes
        for key in sorted(spec.keys, key=lambda k: (is_image_key(k), store.nbytes(k))):
            if store.nbytes(key) <= self._cache_budget:
                self._cache_budget -= store.nbytes(key)
                self._cache[key] = None  # type: ignore[assignment]  # filled on first use

    def __len__(self) -> int:
        return len(self._anchor)

    def warm(self) -> None:
        """Load the cached arrays now (before forking DataLoader workers, so they share the pages)."""
        for key in self._cache:
            if self._cache[key] is None:
                self._cache[key] = self.store.load(key)

    @property
    def cached_keys(self) -> list[str]:
        return list(self._cache)

    @property
    def tasks(self) -> list[str]:
        return list(self._task_index)

    def _rows(self, key: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global frame rows (B, K) for `key` and the padding mask."""
        frame = self._anchor[idx, None] + self._offsets[key][None, :]  # (B, K)
        length = self._length[self._episode[idx], None]
        is_pad = (frame < 0) | (frame >= length)
        frame = np.clip(frame, 0, length - 1)
        return self._start[self._episode[idx], None] + frame, is_pad

    def _read(self, key: str, rows: np.ndarray) -> np.ndarray:
        if key in self._cache:
            if self._cache[key] is None:
                self._cache[key] = self.store.load(key)
            return self._cache[key][rows]
        flat = rows.reshape(-1)
        uniq, inverse = np.unique(flat, return_inverse=True)
        data = self.store.read_rows(key, uniq)
        return data[inverse].reshape(*rows.shape, *data.shape[1:])

    def sample(self, idx: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The windows `idx` as arrays with a leading batch axis: key -> (B, K, ...), plus `<key>_is_pad`,
        `task_index` (B,), `episode_index` (B,) and `frame_index` (B,) of the anchor."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"window index out of range [0, {len(self)})")
        out: dict[str, np.ndarray] = {}
        for key in self.spec.keys:
            rows, is_pad = self._rows(key, idx)
            out[key] = self._read(key, rows)
            out[f"{key}_is_pad"] = is_pad
        episode = self._episode[idx]
        out["episode_index"] = episode
        out["frame_index"] = self._anchor[idx]
        out["task_index"] = self._episode_task[episode]
        return out

    def batches(
        self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> Iterator[dict[str, np.ndarray]]:
        """One pass over all windows in batches (the single-process fast path)."""
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.sample(order[i : i + batch_size])
