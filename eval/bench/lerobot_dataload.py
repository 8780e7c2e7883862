"""Windows per second through LeRobot's own loader (`LeRobotDataset` + a torch DataLoader) against ours,
on the same frames: part of `visuomotor bench dataload`.

Our synthetic store (or its first episodes) is exported with `visuomotor dataset convert --to lerobot`
(the camera becomes an MP4 per episode, as LeRobot records it), then both loaders produce the same
windows: 2 observation frames (state and camera at t-1, t) and 16 actions from t-1, LeRobot's through
`delta_timestamps`, ours through `WindowSpec(n_obs_steps=2, horizon=16)`. LeRobot decodes its videos with
PyAV (the backend our converter uses; torchcodec may not load here). Each loader runs for a fixed wall
time after one warm-up batch, shuffled, batch 64, with 0 and with 2 worker processes.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from visuomotor.datasets import EpisodeStore

log = logging.getLogger(__name__)

BATCH = 64


def _subset(store: EpisodeStore, episodes: int, path: Path) -> EpisodeStore:
    """The first `episodes` episodes of `store` as a store of their own (the export takes minutes per 100)."""
    out = EpisodeStore.create(path, fps=store.fps, env_id=store.attrs.get("env_id", ""))
    for i in range(min(episodes, store.num_episodes)):
        out.append_episode(store.episode(i), task=store.task(i))
    return out


def lerobot_loader(root: Path, fps: float, camera: str, workers: int) -> Any:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    step = 1.0 / round(fps)  # the export writes the store's fps, rounded (LeRobot's fps is an int)
    deltas = {
        "observation.state": [-step, 0.0],
        camera: [-step, 0.0],
        "action": [(k - 1) * step for k in range(16)],
    }
    dataset = LeRobotDataset(f"local/{root.name}", root=root, delta_timestamps=deltas, video_backend="pyav")
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=workers, generator=generator
    )


def compare(store: EpisodeStore, camera: str, seconds: float, episodes: int) -> dict[str, Any]:
    """LeRobot's and our windows/s on the first `episodes` episodes of `store` (state + `camera`)."""
    from visuomotor.datasets.interop.lerobot_export import export_lerobot
    from visuomotor.eval.bench.dataload import measure, windows_per_second

    with tempfile.TemporaryDirectory(prefix="vm-bench-lerobot-") as tmp:
        subset = _subset(store, episodes, Path(tmp) / "subset.zarr")
        t0 = time.perf_counter()
        root = export_lerobot(subset.path, Path(tmp) / "lerobot")
        export_s = time.perf_counter() - t0
        rows = []
        for workers in (0, 2):
            rate = windows_per_second(lerobot_loader(root, subset.fps, camera, workers), seconds)
            rows.append({"loader": "lerobot", "workers": workers, "windows_per_s": rate})
            for cache in ("memory", "decode"):
                ours = measure(subset, ("observation.state", camera), cache, workers, seconds, BATCH)
                rows.append({"loader": f"visuomotor ({cache})", "workers": workers, "windows_per_s": ours})
        for row in rows:
            log.info("%-22s workers=%d: %9.0f windows/s", row["loader"], row["workers"], row["windows_per_s"])
        return {
            "episodes": subset.num_episodes,
            "frames": subset.num_frames,
            "export_s": export_s,
            "batch_size": BATCH,
            "results": rows,
        }
