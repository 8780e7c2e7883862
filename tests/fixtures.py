"""Small deterministic episode stores for the data-layer tests (plain helpers, no pytest fixtures).

Frames are identifiable: column 0 of `observation.state` and of `action` holds the global frame index,
column 1 of `observation.state` the episode index, so a test can tell exactly which frames a window read.
Every value is non-zero (images in 1..255), so no chunk is ever entirely zero.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from visuomotor.datasets import EpisodeStore

IMAGE_KEY = "observation.images.top"
STATE_DIM = 4
ACTION_DIM = 2


def episode_arrays(
    length: int,
    *,
    episode: int = 0,
    first_frame: int = 0,
    camera: bool = True,
    image_hw: int = 8,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One episode's arrays (float32 low-dim, uint8 images), deterministic in (seed, episode)."""
    rng = np.random.default_rng([seed, episode])
    frames = np.arange(first_frame, first_frame + length, dtype=np.float32)
    state = rng.uniform(0.5, 2.0, size=(length, STATE_DIM)).astype(np.float32)
    state[:, 0] = frames
    state[:, 1] = episode
    action = rng.uniform(-1.0, 1.0, size=(length, ACTION_DIM)).astype(np.float32)
    action[:, 0] = frames
    out = {"observation.state": state, "action": action}
    if camera:
        out[IMAGE_KEY] = rng.integers(1, 256, size=(length, image_hw, image_hw, 3), dtype=np.uint8)
    return out


def make_store(
    path: str | Path,
    episodes: int = 3,
    lengths: Sequence[int] | None = None,
    camera: bool = True,
    seed: int = 0,
    *,
    image_hw: int = 8,
    fps: int = 10,
    env_id: str = "test-env-v0",
    tasks: Sequence[str] | None = None,
) -> tuple[EpisodeStore, list[dict[str, np.ndarray]]]:
    """A new store at `path` with `episodes` episodes; returns it (writable) and the arrays written."""
    lengths = list(lengths) if lengths is not None else [10 + 3 * i for i in range(episodes)]
    assert len(lengths) == episodes, "one length per episode"
    tasks = list(tasks) if tasks is not None else [f"task {i % 2}" for i in range(episodes)]
    store = EpisodeStore.create(
        path, fps=fps, env_id=env_id, action_space={"type": "delta_ee", "dim": ACTION_DIM}
    )
    written, first = [], 0
    for e, n in enumerate(lengths):
        data = episode_arrays(n, episode=e, first_frame=first, camera=camera, image_hw=image_hw, seed=seed)
        store.append_episode(data, task=tasks[e], meta={"seed": seed * 100 + e, "success": e % 2 == 0})
        written.append(data)
        first += n
    return store, written


def concat(episodes: Sequence[dict[str, np.ndarray]], key: str) -> np.ndarray:
    """All frames of `key`, episodes concatenated (what the store should hold)."""
    return np.concatenate([ep[key] for ep in episodes])


def make_dp_v2_store(
    path: str | Path, lengths: Sequence[int], seed: int = 0, image_hw: int = 16
) -> dict[str, np.ndarray]:
    """A Diffusion Policy ReplayBuffer-style zarr v2 store (`data/<key>`, `meta/episode_ends`).

    Like DP's PushT image store: `img` (T, H, W, 3) uint8 one frame per chunk, `state` and `action` float32
    in large chunks, Blosc compressors, `episode_ends` int64 uncompressed. Returns the full arrays.
    """
    rng = np.random.default_rng(seed)
    total = int(sum(lengths))
    arrays = {
        "img": rng.integers(1, 256, size=(total, image_hw, image_hw, 3), dtype=np.uint8),
        "state": rng.normal(size=(total, 5)).astype(np.float32),
        "action": rng.normal(size=(total, 2)).astype(np.float32),
    }
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    data = root.create_group("data")
    chunks = {"img": (1, image_hw, image_hw, 3), "state": (64, 5), "action": (64, 2)}
    for key, value in arrays.items():
        compressor = numcodecs.Blosc(
            cname="zstd" if key == "img" else "lz4",
            clevel=5,
            shuffle=numcodecs.Blosc.NOSHUFFLE if key == "img" else numcodecs.Blosc.SHUFFLE,
        )
        arr = data.create_array(
            key, shape=value.shape, chunks=chunks[key], dtype=value.dtype, compressors=compressor
        )
        arr[:] = value
    meta = root.create_group("meta")
    ends = np.cumsum(lengths).astype(np.int64)
    arr = meta.create_array(
        "episode_ends", shape=ends.shape, chunks=ends.shape, dtype="int64", compressors=None
    )
    arr[:] = ends
    arrays["episode_ends"] = ends
    return arrays


def chunk_file(store_path: str | Path, key: str, frame: int) -> Path:
    """The chunk file holding `frame` of a v3 store array written by EpisodeStore (C-order, '/' keys)."""
    arr = zarr.open_array(str(Path(store_path) / "data" / key), mode="r")
    coords = (frame // arr.chunks[0],) + (0,) * (arr.ndim - 1)
    return Path(store_path) / "data" / key / "c" / "/".join(str(c) for c in coords)


def run_cli(argv: Sequence[str]) -> tuple[int, str, str]:
    """`visuomotor ARGV` in process: (exit code, stdout, stderr)."""
    from visuomotor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def crash_episode(i: int) -> dict[str, np.ndarray]:
    """Episode `i` of the crash-safety tests (the killed child writes it, the test checks it)."""
    rng = np.random.default_rng(i)
    T = 5 + i
    return {
        "observation.state": rng.normal(size=(T, 3)).astype(np.float32),
        "action": rng.normal(size=(T, 2)).astype(np.float32),
        "observation.images.cam": rng.integers(0, 255, (T, 8, 8, 3), dtype=np.uint8),
    }


# A Diffusion Policy small enough that a training step takes milliseconds (CLI overrides).
TINY_DIFFUSION = [
    "-o",
    "down_dims=[16,32]",
    "-o",
    "step_embed_dim=16",
    "-o",
    "horizon=8",
    "-o",
    "n_action_steps=4",
]


# A CARP small enough that a training step takes milliseconds: horizon 8 -> latent length 2 -> scales 1, 2.
TINY_CARP = [
    "-o",
    "horizon=8",
    "-o",
    "n_action_steps=4",
    "-o",
    "scales=[1,2]",
    "-o",
    "codebook_size=16",
    "-o",
    "width=16",
    "-o",
    "depth=2",
    "-o",
    "heads=2",
    "-o",
    "tokenizer_batch_size=16",
]


def torchrun_cli(
    args: Sequence[str],
    nproc: int = 2,
    timeout: float = 600,
    script: Path | None = None,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """`visuomotor <args>` under torchrun with `nproc` CPU processes (gloo), one thread each (or `script`
    with those arguments, e.g. a wrapper that kills itself)."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    target = [str(script)] if script else ["-m", "visuomotor.cli"]
    cmd = [torchrun, "--standalone", "--nproc_per_node", str(nproc), *target, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
