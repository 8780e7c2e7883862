"""What a dataset reader hands the store writer: the facts of the whole dataset, and its episodes one at a
time (architecture.md §Interop).

A reader (`lerobot.py`, `robomimic.py`, the zarr stores in `convert.py`) validates everything it can
before it returns a Source, so bad input fails before a destination exists; `read(i)` then loads a single
episode, which keeps memory at one episode whatever the dataset's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One episode as the store takes it: key -> (T, ...) arrays, its task text and its metadata."""

    data: dict[str, np.ndarray]
    task: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A dataset ready to be written into a store.

    `options` are whatever else decides the result (renames, an episode subset): a partial destination is
    resumed only by a run with the same source, format and options."""

    path: Path
    format: str
    num_episodes: int
    fps: int
    read: Callable[[int], Episode]
    env_id: str = ""
    action_space: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
