"""The episode store: a zarr v3 group of time-major arrays plus cumulative episode ends
(architecture.md §Store).

    root/
      data/<key>          (total_frames, ...) ; images uint8 (T, H, W, C), one frame per chunk
      meta/episode_ends   int64 cumulative frame counts; appending to it commits an episode
      meta (group attrs)  "episodes": [{"task": str, "meta": {...}}, ...] per episode
      root attrs          format_version, fps, env_id, action_space, tasks, stats, user attributes

Crash safety comes from write order plus atomic file writes (zarr's LocalStore writes every chunk and
metadata document to a temporary file and renames it): data chunks, then the per-episode attributes, then
the new `episode_ends` entry. A writer killed at any point leaves the committed prefix untouched; frames
or attributes past the last committed episode are ignored by readers and dropped by the next writer.
`episode_ends` uses fill value -1, so an entry whose shape was grown but whose value was never written
reads as -1 and is recognised as uncommitted.

Diffusion Policy's ReplayBuffer stores (zarr v2, same `data/` + `meta/episode_ends` layout) open
read-only through the same class.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from visuomotor.datasets.chunks import ChunkError, ChunkReader, gather_rows
from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError, PathExistsError
from visuomotor.keys import IMAGE_PREFIX

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Low-dim arrays: large chunks (architecture.md §Store); 4096 frames of a 39-d float32 state is ~640 KB.
LOWDIM_CHUNK_FRAMES = 4096
ENDS_CHUNK = 4096


FLOAT32_KEYS = ("action", "observation.state", "observation.environment_state")


def _writable(arr: zarr.Array) -> zarr.Array:
    """zarr skips writing chunks equal to the fill value unless told otherwise; the config is not
    persisted, so it is set on every open. An all-zero frame must exist on disk: a missing chunk is
    an error for our readers, never a silent fill."""
    return arr.with_config({"write_empty_chunks": True})


def _is_image_like(key: str, value: np.ndarray) -> bool:
    return is_image_key(key) or (value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] in (1, 3, 4))


class StoreError(InvalidInputError):
    """The store or the data given to it is invalid; the message names the array and episode."""


def is_image_key(key: str) -> bool:
    return key.startswith(IMAGE_PREFIX)


def _codecs(key: str) -> list[Any]:
    # lz4 decodes fastest, which is what the training loader needs; crc32c turns silent bit rot into an
    # error instead of a wrong sample.
    shuffle = "noshuffle" if is_image_key(key) else "shuffle"
    return [BloscCodec(cname="lz4", clevel=5, shuffle=shuffle), Crc32cCodec()]


def _check_key_dtype(key: str, dtype: np.dtype, where: str) -> None:
    if is_image_key(key) and dtype != np.uint8:
        raise StoreError(f"{where}: image array '{key}' must be uint8 (H, W, C), got {dtype}")
    if key in ("action", "observation.state", "observation.environment_state") and dtype.kind != "f":
        raise StoreError(f"{where}: array '{key}' must be floating point, got {dtype}")


def _check_array_metadata(path: Path) -> None:
    """Every array folder under data/ and meta/ has its zarr.json: without it zarr would quietly list
    one array fewer (a store whose actions vanished would read as a store without actions)."""
    for group in ("data", "meta"):
        folder = path / group
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            missing = sub.is_dir() and not (sub / "zarr.json").exists() and not (sub / ".zarray").exists()
            if missing and _holds_chunks(sub):  # without chunks: a writer killed while creating it
                raise StoreError(
                    f"{path}: array '{group}/{sub.name}' has lost its metadata ({sub}/zarr.json)"
                )


def _holds_chunks(folder: Path) -> bool:
    """Whether an array folder holds chunk data. zarr writes files atomically through a temporary
    `<name>.<hex>.partial` beside them, which a writer killed mid-write leaves behind: not a chunk."""
    return any(
        p.is_file() and p.name != "zarr.json" and not p.name.endswith(".partial") for p in folder.rglob("*")
    )


class EpisodeStore:
    """An episode store on disk. Create with `create`, open with `open`; see the module docstring."""

    def __init__(self, root: zarr.Group, path: Path, mode: str) -> None:
        self._root = root
        self.path = path
        self.mode = mode
        self.zarr_format: int = root.metadata.zarr_format
        if "data" not in root or not isinstance(root["data"], zarr.Group):
            raise StoreError(f"{path}: not an episode store: group 'data' is missing")
        if "meta" not in root or "episode_ends" not in root["meta"]:
            raise StoreError(f"{path}: not an episode store: array 'meta/episode_ends' is missing")
        self._data: zarr.Group = root["data"]
        self._meta: zarr.Group = root["meta"]
        self._arrays: dict[str, zarr.Array] = {name: _writable(arr) for name, arr in self._data.arrays()}
        self._readers: dict[str, ChunkReader] = {}
        self._ends = self._read_episode_ends()
        self._episodes_meta: list[dict[str, Any]] = list(self._meta.attrs.get("episodes", []))
        self._validate_arrays()

    # ------------------------------------------------------------------ opening and creating
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        fps: int,
        env_id: str = "",
        action_space: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> EpisodeStore:
        """A new, empty store. Arrays are created by the first `append_episode`.

        Atomic: the store is built under a hidden temporary name beside `path` and renamed into place,
        so a writer killed while creating leaves either no store or a complete empty one."""
        path = Path(path)
        if path.exists():
            raise PathExistsError(f"{path} already exists; open it with mode='a' to append")
        if fps <= 0:
            raise StoreError(f"fps must be positive, got {fps}")
        root_attrs: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "fps": int(fps),
            "env_id": env_id,
            "action_space": dict(action_space or {}),
            "tasks": [],
        }
        root_attrs.update(_jsonable(dict(attrs or {}), "attrs"))
        remove_abandoned_creations(path)
        tmp = path.with_name(f"{_CREATING_PREFIX}{path.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        root.create_group("data")
        meta = root.create_group("meta")
        meta.create_array(
            "episode_ends",
            config={"write_empty_chunks": True},
            shape=(0,),
            chunks=(ENDS_CHUNK,),
            dtype="int64",
            fill_value=-1,
            compressors=[Crc32cCodec()],  # bit rot in the commit record is an error, not a shifted episode
        )
        meta.attrs["episodes"] = []
        root.attrs.update(root_attrs)
        try:
            os.rename(tmp, path)  # the commit point of creation
        except OSError as exc:  # another writer created `path` meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            raise PathExistsError(f"{path} already exists; open it with mode='a' to append") from exc
        return cls(zarr.open_group(str(path), mode="r+"), path, "a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> EpisodeStore:
        """Open an existing store: mode "r" (read-only) or "a" (append)."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        path = Path(path)
        if not path.exists():
            raise MissingPathError(f"{path}: no such store")
        if not path.is_dir() or not any((path / f).exists() for f in ("zarr.json", ".zgroup")):
            raise StoreError(f"{path}: not a zarr store (no zarr.json or .zgroup)")
        try:
            root = zarr.open_group(str(path), mode="r" if mode == "r" else "r+")
        except Exception as exc:
            raise StoreError(f"{path}: cannot open as a zarr group: {exc}") from exc
        if mode == "a" and root.metadata.zarr_format != 3:
            raise StoreError(
                f"{path}: zarr v{root.metadata.zarr_format} stores open read-only; "
                "convert it with `visuomotor dataset convert SRC DST`"
            )
        _check_array_metadata(path)
        try:
            store = cls(root, path, mode)
            unread = sorted(
                p.name
                for p in (path / "data").iterdir()
                if p.is_dir() and p.name not in store._arrays and _holds_chunks(p)
            )
            if unread:  # zarr skips (with a warning) an array whose zarr.json it cannot make sense of
                raise StoreError(f"{path}: array 'data/{unread[0]}' has damaged metadata (its zarr.json)")
            if mode == "a":
                store._drop_uncommitted()
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            if isinstance(exc, StoreError):
                raise
            # zarr parses each array's zarr.json here; a damaged one is the store's damage, not a bug
            # (OverflowError: a fill value too large for the array's dtype).
            raise StoreError(f"{path}: damaged metadata: {type(exc).__name__}: {exc}") from exc
        return store

    # ------------------------------------------------------------------ validation
    def _read_episode_ends(self) -> np.ndarray:
        arr = self._meta["episode_ends"]
        where = f"{self.path}: array 'meta/episode_ends'"
        if arr.ndim != 1 or np.dtype(arr.dtype).kind not in "iu":
            raise StoreError(f"{where} must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        reader = ChunkReader(arr, "meta/episode_ends")
        n_rows, clen = arr.shape[0], arr.chunks[0]
        parts = []
        for c in range(math.ceil(n_rows / clen)):
            rows = min(clen, n_rows - c * clen)
            try:
                parts.append(reader.read((c,))[:rows])
            except ChunkError as exc:
                # A writer killed between growing the array and writing the first entry of a new chunk
                # leaves exactly that one entry without a chunk: uncommitted, like a trailing -1.
                if c == math.ceil(n_rows / clen) - 1 and rows == 1 and self.zarr_format == 3:
                    parts.append(np.full(1, -1, dtype=np.int64))
                else:
                    raise StoreError(f"{self.path}: {exc}") from exc
        raw = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        raw = raw.astype(np.int64)
        # Trailing -1 entries: shape grown by a writer that died before writing the value.
        n = len(raw)
        while n > 0 and raw[n - 1] == -1:
            n -= 1
        if n < len(raw):
            log.warning("%s: ignoring %d uncommitted episode_ends entries", self.path, len(raw) - n)
        ends = raw[:n]
        lengths = np.diff(ends, prepend=0)
        bad = np.flatnonzero(lengths <= 0)
        if len(bad):
            e = int(bad[0])
            prev = 0 if e == 0 else int(ends[e - 1])
            raise StoreError(
                f"{where} is not strictly increasing at episode {e}: end {int(ends[e])} after {prev}"
            )
        return ends

    def _validate_arrays(self) -> None:
        total = self.num_frames
        for key, arr in self._arrays.items():
            if arr.ndim == 0:
                raise StoreError(f"{self.path}: array 'data/{key}' is a scalar, expected time-major")
            if arr.shape[0] < total:
                ep = int(np.searchsorted(self._ends, arr.shape[0], side="right"))
                raise StoreError(
                    f"{self.path}: array 'data/{key}' has {arr.shape[0]} frames but episode_ends says "
                    f"{total}: episode {ep} is incomplete in '{key}'"
                )
            _check_key_dtype(key, np.dtype(arr.dtype), f"{self.path}")
            if self.zarr_format == 3 and tuple(arr.chunks[1:]) != tuple(arr.shape[1:]):
                # Our writer chunks whole frames; a frame shape that disagrees is damaged metadata, which
                # zarr would otherwise read as narrower frames without a word.
                raise StoreError(
                    f"{self.path}: array 'data/{key}' has frames of shape {list(arr.shape[1:])} but chunks of "
                    f"{list(arr.chunks[1:])}: its zarr.json is damaged"
                )

    def check_chunks(self) -> None:
        """Verify that every chunk holding committed frames exists on disk (a slower, full check)."""
        for key in self.keys:
            missing = self._reader(key).missing_chunks(self.num_frames)
            if missing:
                first = missing[0][0] * self._arrays[key].chunks[0]
                ep = self.episode_of(first)
                raise StoreError(
                    f"{self.path}: array 'data/{key}' is missing {len(missing)} chunk(s), first at "
                    f"frame {first} (episode {ep})"
                )

    def _drop_uncommitted(self) -> None:
        """Trim whatever a killed writer left past the last committed episode."""
        if self.num_episodes == 0 and self._arrays:
            # A writer killed in the first append: its arrays hold nothing committed, and may lack some
            # keys; the next first append creates them anew.
            log.warning("%s: dropping the arrays of an uncommitted first episode: %s", self.path, self.keys)
            for key in list(self._arrays):
                del self._data[key]
            self._arrays.clear()
            self._readers.clear()
        total = self.num_frames
        for key, arr in self._arrays.items():
            if arr.shape[0] > total:
                log.warning(
                    "%s: dropping %d uncommitted frames of '%s'", self.path, arr.shape[0] - total, key
                )
                arr.resize((total, *arr.shape[1:]))
        ends_arr = self._meta["episode_ends"]
        if ends_arr.shape[0] > self.num_episodes:
            ends_arr.resize((self.num_episodes,))
        if len(self._episodes_meta) > self.num_episodes:
            self._episodes_meta = self._episodes_meta[: self.num_episodes]
            self._meta.attrs["episodes"] = self._episodes_meta
        for partial in self.path.rglob("*.partial"):
            partial.unlink(missing_ok=True)

    # ------------------------------------------------------------------ properties
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    @property
    def fps(self) -> float:
        return float(self._root.attrs.get("fps", 10))

    @property
    def env_id(self) -> str:
        return str(self._root.attrs.get("env_id", ""))

    @property
    def num_episodes(self) -> int:
        return len(self._ends)

    @property
    def num_frames(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self._ends[:-1]]).astype(np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    @property
    def keys(self) -> list[str]:
        return sorted(self._arrays)

    def array(self, key: str) -> zarr.Array:
        try:
            return self._arrays[key]
        except KeyError:
            raise MissingKeyError(f"{self.path}: no array 'data/{key}'; the store has {self.keys}") from None

    def shape(self, key: str) -> tuple[int, ...]:
        """Per-frame shape of `key`."""
        return tuple(self.array(key).shape[1:])

    def dtype(self, key: str) -> np.dtype:
        return np.dtype(self.array(key).dtype)

    def task(self, episode: int) -> str:
        self._check_episode(episode)
        if episode < len(self._episodes_meta):
            return str(self._episodes_meta[episode].get("task", ""))
        return ""

    def episode_meta(self, episode: int) -> dict[str, Any]:
        self._check_episode(episode)
        if episode < len(self._episodes_meta):
            return dict(self._episodes_meta[episode].get("meta", {}))
        return {}

    @property
    def tasks(self) -> list[str]:
        """Distinct task texts, in order of first appearance."""
        return list(dict.fromkeys(self.task(i) for i in range(self.num_episodes)))

    def episode_of(self, frame: int) -> int:
        return int(np.searchsorted(self._ends, frame, side="right"))

    def _check_episode(self, episode: int) -> None:
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"{self.path}: episode {episode} out of range (store has {self.num_episodes})")

    # ------------------------------------------------------------------ reading
    def _reader(self, key: str) -> ChunkReader:
        if key not in self._readers:
            self._readers[key] = ChunkReader(self.array(key), f"data/{key}")
        return self._readers[key]

    def read_rows(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Frames at global indices `rows` of `key` (any order, repeats allowed)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_frames):
            raise IndexError(f"{self.path}: frame index out of range [0, {self.num_frames}) for '{key}'")
        try:
            return gather_rows(self._reader(key), rows)
        except ChunkError as exc:
            clen = self.array(key).chunks[0]
            lo = exc.coords[0] * clen if exc.coords else int(rows.min())
            hit = rows[(rows >= lo) & (rows < lo + clen)] if exc.coords else rows
            first, last = self.episode_of(int(hit.min())), self.episode_of(int(hit.max()))
            where = f"episode {first}" if first == last else f"episodes {first}..{last}"
            raise StoreError(f"{self.path}: reading '{key}' ({where}): {exc}") from exc

    def frames(self, start: int, stop: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Global frame range [start, stop) of the given keys (all keys by default)."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.path}: frame range [{start}, {stop}) outside [0, {self.num_frames})")
        rows = np.arange(start, stop)
        return {k: self.read_rows(k, rows) for k in (keys if keys is not None else self.keys)}

    def episode(
        self, episode: int, keys: Iterable[str] | None = None, start: int = 0, stop: int | None = None
    ) -> dict[str, np.ndarray]:
        """Frames [start, stop) of one episode (the whole episode by default)."""
        self._check_episode(episode)
        s0 = int(self.episode_starts[episode])
        n = int(self.episode_lengths[episode])
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise IndexError(f"{self.path}: range [{start}, {stop}) outside episode {episode} of length {n}")
        return self.frames(s0 + start, s0 + stop, keys)

    def load(self, key: str) -> np.ndarray:
        """The whole committed array of `key` in memory."""
        return self.read_rows(key, np.arange(self.num_frames))

    def nbytes(self, key: str) -> int:
        return self.num_frames * math.prod(self.shape(key)) * self.dtype(key).itemsize

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.mode != "a":
            raise StoreError(f"{self.path}: store is open read-only; open it with mode='a' to write")

    def _validate_episode(self, data: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        where = f"{self.path}: episode {self.num_episodes}"
        if not data:
            raise StoreError(f"{where}: no arrays given")
        arrays = {k: np.asarray(v) for k, v in data.items()}
        lengths = {k: (v.shape[0] if v.ndim else -1) for k, v in arrays.items()}
        if any(n < 0 for n in lengths.values()):
            scalars = [k for k, n in lengths.items() if n < 0]
            raise StoreError(f"{where}: arrays must be time-major, got scalar(s) {scalars}")
        if len(set(lengths.values())) != 1:
            raise StoreError(
                f"{where}: ragged lengths, every array needs the same number of frames: {lengths}"
            )
        length = next(iter(lengths.values()))
        if length == 0:
            raise StoreError(f"{where}: episode has no frames")
        if self._arrays:
            missing = sorted(set(self._arrays) - set(arrays))
            extra = sorted(set(arrays) - set(self._arrays))
            if missing or extra:
                raise StoreError(
                    f"{where}: keys do not match the store: missing {missing}, unexpected {extra}"
                )
        for key, value in arrays.items():
            _check_key_dtype(key, value.dtype, where)
            if is_image_key(key) and value.ndim != 4:
                raise StoreError(
                    f"{where}: image array '{key}' must be (T, H, W, C), got shape {value.shape}"
                )
            if key in self._arrays:
                arr = self._arrays[key]
                if tuple(arr.shape[1:]) != value.shape[1:]:
                    raise StoreError(
                        f"{where}: array '{key}' has frame shape {value.shape[1:]}, the store has "
                        f"{tuple(arr.shape[1:])}"
                    )
                want = np.dtype(arr.dtype)
                # Float precision may differ (numpy defaults to float64); other kinds must match exactly.
                if value.dtype != want and not (value.dtype.kind == want.kind == "f"):
                    raise StoreError(f"{where}: array '{key}' has dtype {value.dtype}, the store has {want}")
                arrays[key] = value.astype(want, copy=False)
            elif value.dtype == np.float64 and key in FLOAT32_KEYS:
                # The standard keys are float32; other keys (e.g. converted stores) keep their dtype.
                arrays[key] = value.astype(np.float32)
            if arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all():
                raise StoreError(f"{where}: array '{key}' contains NaN or inf")
        return arrays, length

    def append_episode(
        self, data: Mapping[str, np.ndarray], task: str = "", meta: Mapping[str, Any] | None = None
    ) -> int:
        """Write one episode and commit it; returns its index. Nothing is committed if this raises."""
        self._require_writable()
        arrays, length = self._validate_episode(data)
        meta_json = _jsonable(dict(meta or {}), f"episode {self.num_episodes} meta")
        start, stop = self.num_frames, self.num_frames + length
        for key, value in arrays.items():
            if key not in self._arrays:
                frame_shape = value.shape[1:]
                chunk_t = 1 if _is_image_like(key, value) else LOWDIM_CHUNK_FRAMES
                self._arrays[key] = self._data.create_array(
                    key,
                    shape=(0, *frame_shape),
                    chunks=(chunk_t, *frame_shape),
                    dtype=value.dtype,
                    compressors=_codecs(key),
                    fill_value=0,
                    config={"write_empty_chunks": True},
                )
            arr = self._arrays[key]
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = value
        self._readers.clear()
        entry = {"task": str(task), "meta": meta_json}
        self._meta.attrs["episodes"] = [*self._episodes_meta, entry]
        tasks = list(self._root.attrs.get("tasks", []))
        if task not in tasks:
            self._root.attrs["tasks"] = [*tasks, task]
        # The commit point: grow episode_ends and write the new end (architecture.md §Store).
        ends_arr = self._meta["episode_ends"]
        n = self.num_episodes
        ends_arr.resize((n + 1,))
        ends_arr[n] = stop
        self._ends = np.append(self._ends, np.int64(stop))
        self._episodes_meta.append(entry)
        return n

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge `attrs` into the root attributes."""
        self._require_writable()
        self._root.attrs.update(_jsonable(dict(attrs), "attrs"))

    # ------------------------------------------------------------------ summaries
    def info(self) -> dict[str, Any]:
        """The summary printed by `visuomotor dataset info`."""
        lengths = self.episode_lengths
        return {
            "path": str(self.path),
            "zarr_format": self.zarr_format,
            "format_version": self._root.attrs.get("format_version"),
            "episodes": self.num_episodes,
            "frames": self.num_frames,
            "fps": self._root.attrs.get("fps"),
            "env_id": self.env_id,
            "keys": {
                k: {
                    "shape": list(self.shape(k)),
                    "dtype": str(self.dtype(k)),
                    "chunks": list(self.array(k).chunks),
                }
                for k in self.keys
            },
            "tasks": self.tasks,
            "episode_length": {
                "min": int(lengths.min()) if len(lengths) else 0,
                "mean": float(lengths.mean()) if len(lengths) else 0.0,
                "max": int(lengths.max()) if len(lengths) else 0,
            },
            "size_on_disk_bytes": self.size_on_disk(),
            "attrs": {k: v for k, v in self.attrs.items() if k not in ("tasks", "stats")},
            "has_stats": "stats" in self._root.attrs,
        }


_CREATING_PREFIX = ".creating-"


def remove_abandoned_creations(path: Path) -> None:
    """Delete what writers killed while creating `path` left (hidden siblings named after their pid)."""
    for tmp in path.parent.glob(f"{_CREATING_PREFIX}{path.name}.*"):
        pid = tmp.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _jsonable(value: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be JSON-serialisable: {exc}") from exc
