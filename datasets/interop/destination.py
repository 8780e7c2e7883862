"""Writing a converted dataset so that no reader can mistake a half-written one for a whole one
(architecture.md §Interop).

A store destination carries the root attribute `conversion = {source, format, options, episodes,
complete}` from the moment it exists (it is part of the store's atomic creation, architecture.md §Store)
and gets `complete: true` only after its last episode is committed. Re-running the same conversion on a
destination whose marker says incomplete resumes after the episodes already committed: the store's own
commit protocol guarantees those are whole, and opening it for append drops whatever a killed writer left
past them. Any other existing destination is refused.

A directory destination in another format (a LeRobot dataset) is built under a hidden sibling name and
renamed into place when it is finished, so a killed export leaves no destination at all; the next run
removes the abandoned sibling and starts over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from visuomotor.datasets.interop.source import Source
from visuomotor.datasets.store import EpisodeStore, remove_abandoned_creations
from visuomotor.errors import PathExistsError, UserError

log = logging.getLogger(__name__)

CONVERSION_ATTR = "conversion"
_BUILDING_PREFIX = ".creating-"  # the store's own prefix for a destination being created


def conversion_marker(source: Source) -> dict[str, Any]:
    """The `conversion` attribute of a destination being written from `source` (not yet complete)."""
    marker = {
        "source": str(source.path.resolve()),
        "format": source.format,
        "options": source.options,
        "episodes": source.num_episodes,  # a source that changed since the first run is not resumed
        "complete": False,
    }
    return json.loads(json.dumps(marker))  # as it reads back from the store (tuples become lists)


def write_store(dst: str | Path, source: Source) -> EpisodeStore:
    """Write every episode of `source` into the store `dst` (new, or an unfinished conversion of the same
    source, which is resumed); returns the complete store."""
    dst = Path(dst)
    marker = conversion_marker(source)
    store, created = _open_destination(dst, source, marker)
    start = store.num_episodes
    if start > source.num_episodes:
        raise PathExistsError(
            f"{dst} holds {start} episodes but {source.path} has only {source.num_episodes}; "
            "it is not a partial conversion of it: remove it or choose a new destination"
        )
    if start:
        log.info("%s: resuming the conversion after %d of %d episodes", dst, start, source.num_episodes)
    try:
        for i in progress(range(start, source.num_episodes), source.num_episodes, start, source.path.name):
            episode = source.read(i)
            store.append_episode(episode.data, task=episode.task, meta=episode.meta)
    except BaseException:
        _after_failure(store, created)
        raise
    store.update_attrs({CONVERSION_ATTR: {**marker, "complete": True}})
    log.info("converted %s (%s, %d episodes) -> %s", source.path, source.format, store.num_episodes, dst)
    return store


def _open_destination(dst: Path, source: Source, marker: dict[str, Any]) -> tuple[EpisodeStore, bool]:
    """(the store to write into, whether this run created it)."""
    if not os.path.lexists(dst):
        store = EpisodeStore.create(
            dst,
            fps=source.fps,
            env_id=source.env_id,
            action_space=source.action_space,
            attrs={**source.attrs, CONVERSION_ATTR: marker},
        )
        return store, True
    previous = unfinished_conversion(dst)
    if previous is None:
        raise PathExistsError(f"{dst} already exists; choose a new destination")
    keys = ("source", "format", "options", "episodes")
    if any(previous.get(k) != marker[k] for k in keys):
        raise PathExistsError(
            f"{dst} already exists and holds an unfinished conversion of {previous.get('source')} "
            f"({previous.get('format')}, {previous.get('episodes')} episodes, options "
            f"{previous.get('options')}), not of {marker['source']} ({marker['format']}, "
            f"{marker['episodes']} episodes, options {marker['options']}): re-run that conversion to "
            "finish it, or remove it"
        )
    return EpisodeStore.open(dst, mode="a"), False


def unfinished_conversion(path: Path) -> dict[str, Any] | None:
    """The `conversion` marker of the store at `path` if it says incomplete; None for anything else."""
    try:
        attrs = EpisodeStore.open(path, mode="r").attrs
    except UserError:  # not a store: certainly not one of ours to resume
        return None
    marker = attrs.get(CONVERSION_ATTR)
    if isinstance(marker, dict) and marker.get("complete") is False:
        return marker
    return None


def _after_failure(store: EpisodeStore, created: bool) -> None:
    if created and store.num_episodes == 0:
        # Nothing of value was written: leave no destination behind.
        shutil.rmtree(store.path, ignore_errors=True)
    elif store.num_episodes:
        log.warning(
            "%s: conversion stopped after %d episodes; the store is marked incomplete (attribute '%s'); "
            "re-run the same command to resume it",
            store.path,
            store.num_episodes,
            CONVERSION_ATTR,
        )


def progress[T](items: Iterable[T], total: int, initial: int, name: str) -> Iterator[T]:
    """`items` with a progress bar on a terminal, else a log line about every tenth of the way."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    step = max(1, total // 10)
    with tqdm(total=total, initial=initial, desc=f"convert {name}", unit="episode", disable=not tty) as bar:
        for done, item in enumerate(items, start=initial + 1):
            yield item
            bar.update()
            if not tty and (done % step == 0 or done == total):
                log.info("%s: %d/%d episodes", name, done, total)


@contextmanager
def building_directory(dst: Path) -> Iterator[Path]:
    """A fresh hidden sibling of `dst` to build a directory in; renamed to `dst` when the block ends
    without an exception, removed when it raises."""
    remove_abandoned_creations(dst)
    tmp = dst.with_name(f"{_BUILDING_PREFIX}{dst.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        if os.path.lexists(dst):  # someone else wrote it meanwhile
            raise PathExistsError(f"{dst} already exists; choose a new destination")
        os.rename(tmp, dst)  # the commit point
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return True
