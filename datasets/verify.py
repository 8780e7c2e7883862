"""Full integrity check of an episode store, and a repaired copy without its damaged episodes
(`visuomotor dataset verify STORE [--repair OUT]`; architecture.md §Store).

Every chunk that holds committed frames is read and decoded, so every crc32c checksum is verified
(`meta/episode_ends` included in stores written since it carries one); float arrays are checked for
NaN and infinity, and the metadata for consistency with `episode_ends` (one entry per episode, the
task list, frame counts). Each problem names the array, the episodes and the frames it touches.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.datasets.chunks import ChunkError, ChunkReader
from visuomotor.datasets.store import EpisodeStore
from visuomotor.errors import InvalidInputError, PathExistsError


@dataclass(frozen=True)
class Problem:
    array: str
    """Array (e.g. 'data/action', 'meta/episode_ends') or 'attributes'."""
    episodes: tuple[int, ...]
    """Episodes it touches; () when it is the store's as a whole."""
    frames: tuple[int, int] | None
    """[start, stop) of the frames it touches."""
    message: str

    def __str__(self) -> str:
        where = self.array
        if self.episodes:
            first, last = self.episodes[0], self.episodes[-1]
            where += f", episode {first}" if first == last else f", episodes {first}..{last}"
        if self.frames:
            where += f", frames {self.frames[0]}..{self.frames[1] - 1}"
        return f"{where}: {self.message}"


def verify_store(store: EpisodeStore, progress: bool = False) -> list[Problem]:
    """Every problem found in `store` (empty when it is intact)."""
    from tqdm import tqdm

    problems = _metadata_problems(store)
    try:
        chunks = list(_committed_chunks(store))
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # array metadata that makes no sense
        return [
            *problems,
            Problem("metadata", (), None, f"the arrays' layout cannot be read: {type(exc).__name__}: {exc}"),
        ]
    for key, reader, coords in tqdm(
        chunks, desc=f"verify {store.path.name}", unit="chunk", disable=not progress
    ):
        problem = _check_chunk(store, key, reader, coords)
        if problem is not None:
            problems.append(problem)
    return problems


def _committed_chunks(store: EpisodeStore) -> Iterator[tuple[str, ChunkReader, tuple[int, ...]]]:
    """(key, reader, chunk coordinates) of every chunk holding committed frames, episode_ends first."""
    ends = store._meta["episode_ends"]
    reader = ChunkReader(ends, "meta/episode_ends")
    for c in range(math.ceil(store.num_episodes / ends.chunks[0])):
        yield "meta/episode_ends", reader, (c,)
    for key in store.keys:
        arr = store.array(key)
        reader = ChunkReader(arr, f"data/{key}")
        rows = range(math.ceil(store.num_frames / arr.chunks[0]))
        for coords in itertools.product(rows, *(range(g) for g in reader.grid[1:])):
            yield f"data/{key}", reader, coords


def _check_chunk(
    store: EpisodeStore, key: str, reader: ChunkReader, coords: tuple[int, ...]
) -> Problem | None:
    clen = reader.chunk_shape[0]
    start = coords[0] * clen
    if key == "meta/episode_ends":
        stop = min(start + clen, store.num_episodes)
        episodes = tuple(range(start, stop))
        frames = None
    else:
        stop = min(start + clen, store.num_frames)
        episodes = tuple(sorted({store.episode_of(start), store.episode_of(stop - 1)}))
        episodes = tuple(range(episodes[0], episodes[-1] + 1))
        frames = (start, stop)
    try:
        values = reader.read(coords)[: stop - start]
    except ChunkError as exc:
        return Problem(key, episodes, frames, str(exc))
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # a chunk that does not fit its array
        return Problem(key, episodes, frames, f"unreadable chunk {coords}: {type(exc).__name__}: {exc}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = start + int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).any(axis=1))[0])
        return Problem(key, (store.episode_of(bad),), (bad, bad + 1), "holds NaN or infinite values")
    return None


def _metadata_problems(store: EpisodeStore) -> list[Problem]:
    problems = []
    episodes_meta = store._meta.attrs.get("episodes", [])
    tasks_attr = store.attrs.get("tasks", [])
    if (
        not isinstance(episodes_meta, list)
        or not isinstance(tasks_attr, list)
        or not all(isinstance(t, str) for t in tasks_attr)
    ):
        return [Problem("attributes", (), None, "meta 'episodes' must be a list and 'tasks' a list of texts")]
    if len(episodes_meta) > store.num_episodes + 1:  # one ahead is an append killed before its commit
        problems.append(
            Problem(
                "meta/episode_ends",
                (),
                None,
                f"commits {store.num_episodes} episodes but meta 'episodes' lists {len(episodes_meta)}",
            )
        )
    if len(episodes_meta) < store.num_episodes:
        problems.append(
            Problem(
                "attributes",
                (),
                None,
                f"meta 'episodes' lists {len(episodes_meta)} episodes, episode_ends {store.num_episodes}",
            )
        )
    tasks = set(tasks_attr)
    for e, entry in enumerate(episodes_meta[: store.num_episodes]):
        task = entry.get("task") if isinstance(entry, dict) else None
        if not isinstance(task, str) or task not in tasks:
            problems.append(
                Problem("attributes", (e,), None, f"task {task!r} is not in the store's task list")
            )
    for key in store.keys:
        if store.array(key).shape[0] < store.num_frames:
            problems.append(
                Problem(
                    f"data/{key}",
                    (),
                    None,
                    f"{store.array(key).shape[0]} frames, episode_ends says {store.num_frames}",
                )
            )
    return problems


def repair(store: EpisodeStore, problems: list[Problem], out: str | Path) -> dict[str, Any]:
    """Copy the episodes no problem touches into a new store `out` (the original is only read).
    Problems of the whole store (episode_ends, metadata without episodes) cannot be repaired."""
    out = Path(out)
    if out.exists():
        raise PathExistsError(f"{out} already exists; --repair writes a new store")
    whole = [p for p in problems if not p.episodes or p.array == "meta/episode_ends"]
    if whole:
        raise InvalidInputError(f"cannot repair {store.path}: {whole[0]} (it concerns every episode)")
    damaged = sorted({e for p in problems for e in p.episodes})
    attrs = {
        k: v
        for k, v in store.attrs.items()
        if k not in ("format_version", "fps", "env_id", "action_space", "tasks", "stats")
    }
    new = EpisodeStore.create(
        out,
        fps=int(store.fps),
        env_id=store.env_id,
        action_space=store.attrs.get("action_space"),
        attrs=attrs,
    )
    kept = 0
    for e in range(store.num_episodes):
        if e not in damaged:
            new.append_episode(store.episode(e), task=store.task(e), meta=store.episode_meta(e))
            kept += 1
    return {"kept": kept, "dropped": damaged, "out": str(out)}
