"""`visuomotor bench dataload`: windows per second from an on-disk episode store.

The store has 100 episodes of 150 frames: a 4-d state, a 4-d action and one 64x64 RGB camera drawn like
a simulator frame (flat table and background, a few moving objects), so chunks compress about as real
renders do. Windows are To=2 observation frames and a Ta=16 action window. Each configuration runs for a
fixed wall time after one warm-up batch:
- keys: state-only, or state + the 64x64 camera;
- cache: "memory" (arrays that fit the budget are loaded once, the default) or "decode" (every frame read
  from its chunk file and decoded on every access; the files themselves sit in the OS page cache, since
  the store was just written or read);
- workers: 0 (the batched fast path in the main process) or 2 DataLoader worker processes.

Two more figures:
- "cold": one pass of random batches right after the store's files are evicted from the page cache
  (`posix_fadvise(DONTNEED)` after `sync`), so chunk files come from the storage device: a first epoch.
- single random 64x64 frames per second through our direct chunk reader against zarr's own
  `array[i]` (its async codec pipeline), both from the page cache.
And LeRobot's loader against ours on the same frames (`lerobot_dataload.py`).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.datasets import EpisodeStore, SequenceSampler, WindowSpec
from visuomotor.datasets.torch_data import make_dataloader
from visuomotor.eval.bench.lerobot_dataload import compare
from visuomotor.keys import IMAGE_PREFIX, image_key

log = logging.getLogger(__name__)

CAMERA = image_key("front")


def synthetic_frames(rng: np.random.Generator, length: int, size: int = 64) -> dict[str, np.ndarray]:
    """One episode: a smooth 4-d state/action trajectory and a rendered-looking image sequence."""
    state = np.cumsum(rng.normal(scale=0.05, size=(length, 4)), axis=0).astype(np.float32)
    action = np.diff(state, axis=0, append=state[-1:]).astype(np.float32) * 10
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((length, size, size, 3), np.uint8)
    images[:] = np.array([70, 90, 110], np.uint8)  # background
    images[:, size // 3 :] = np.array([150, 120, 90], np.uint8)  # table
    centers = (size / 2 + size / 4 * np.tanh(state[:, :2])).astype(np.float32)
    for t in range(length):
        gripper = (xx - centers[t, 0]) ** 2 + (yy - centers[t, 1]) ** 2 < (size / 12) ** 2
        images[t][gripper] = (200, 40, 40)
        images[t, size // 2 : size // 2 + 6, size // 4 : size // 4 + 6] = (40, 180, 40)  # an object
    return {"observation.state": state, "action": action, CAMERA: images}


def make_store(path: Path, episodes: int = 100, length: int = 150, seed: int = 0) -> EpisodeStore:
    store = EpisodeStore.create(path, fps=10, env_id="synthetic/bench")
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        store.append_episode(synthetic_frames(rng, length), task="bench")
    return store


def measure(
    store: EpisodeStore, keys: tuple[str, ...], cache: str, workers: int, seconds: float, batch_size: int
) -> float:
    """Windows per second for one configuration."""
    spec = WindowSpec(n_obs_steps=2, horizon=16, obs_keys=keys)
    sampler = SequenceSampler(store, spec, cache_bytes=(2 << 30) if cache == "memory" else 0)
    sampler.warm()
    return windows_per_second(make_dataloader(sampler, batch_size, num_workers=workers, seed=0), seconds)


def windows_per_second(loader: Any, seconds: float) -> float:
    """Windows per second of a loader (any DataLoader), timed for `seconds` after its first batch."""
    n, start, first = 0, 0.0, True
    while True:
        for batch in loader:
            if first:  # warm-up batch: worker start-up is not throughput
                first, start = False, time.perf_counter()
                continue
            n += len(batch["action"])
            if time.perf_counter() - start >= seconds:
                return n / (time.perf_counter() - start)


def evict_page_cache(root: Path) -> None:
    """Drop the store's files from the OS page cache, so the next reads come from the device."""
    os.sync()  # dirty pages cannot be dropped
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure_cold(store: EpisodeStore, keys: tuple[str, ...], batches: int, batch_size: int) -> float:
    """Windows per second over `batches` random batches read straight after evicting the store."""
    spec = WindowSpec(n_obs_steps=2, horizon=16, obs_keys=keys)
    sampler = SequenceSampler(store, spec, cache_bytes=0)
    rng = np.random.default_rng(0)
    evict_page_cache(Path(store.path))
    start = time.perf_counter()
    for _ in range(batches):
        sampler.sample(rng.integers(0, len(sampler), batch_size))
    return batches * batch_size / (time.perf_counter() - start)


def frames_per_second(store: EpisodeStore, key: str, seconds: float) -> dict[str, float]:
    """Random single frames per second: our direct chunk reader against zarr's `array[i]`."""
    rng = np.random.default_rng(1)
    array = store.array(key)
    rates = {}
    for name, read in (
        ("direct", lambda i: store.read_rows(key, np.array([i]))),
        ("zarr", lambda i: array[int(i)]),
    ):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            read(rng.integers(0, store.num_frames))
            n += 1
        rates[name] = n / (time.perf_counter() - start)
    return rates


def run_benchmark(
    json_path: str | None, quick: bool = False, store_path: str | None = None
) -> dict[str, Any]:
    seconds = 0.5 if quick else 4.0
    episodes = 6 if quick else 100
    tmp = None
    if store_path:
        store = EpisodeStore.open(store_path)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="vm-bench-"))
        t0 = time.perf_counter()
        store = make_store(tmp / "bench.zarr", episodes=episodes)
        log.info("wrote %d frames in %.1f s", store.num_frames, time.perf_counter() - t0)
    try:
        camera = next((k for k in store.keys if k.startswith(IMAGE_PREFIX)), None)
        results: list[dict[str, Any]] = []
        configs = [("state", ("observation.state",))]
        if camera:
            configs.append(("image64", ("observation.state", camera)))
        for name, keys in configs:
            for cache in ("memory", "decode"):
                for workers in (0, 2):
                    rate = measure(store, keys, cache, workers, seconds, batch_size=256)
                    log.info("%-8s cache=%-6s workers=%d: %10.0f windows/s", name, cache, workers, rate)
                    results.append({"keys": name, "cache": cache, "workers": workers, "windows_per_s": rate})
        best = {n: max(r["windows_per_s"] for r in results if r["keys"] == n) for n, _ in configs}
        cold = {name: measure_cold(store, keys, 2 if quick else 20, 256) for name, keys in configs}
        log.info("cold page cache, one pass: %s windows/s", {k: round(v) for k, v in cold.items()})
        frames = frames_per_second(store, camera, seconds) if camera else None
        log.info("random single frames/s: %s", frames)
        peer = compare(store, camera, seconds, 2 if quick else 20) if camera else None
        out: dict[str, Any] = {
            "benchmark": "dataload",
            "date": time.strftime("%Y-%m-%d"),
            "store": {
                "episodes": store.num_episodes,
                "frames": store.num_frames,
                "size_on_disk_mb": round(store.size_on_disk() / 1e6, 1),
                "synthetic": store_path is None,
            },
            "window": {"n_obs_steps": 2, "horizon": 16, "batch_size": 256},
            "seconds_per_config": seconds,
            "results": results,
            "state_windows_per_s": best["state"],
            "image64_windows_per_s": best.get("image64"),
            "cold_windows_per_s": cold,
            "camera_frames_per_s": frames,
            "lerobot_comparison": peer,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
