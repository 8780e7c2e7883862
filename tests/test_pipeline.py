"""End to end through the real CLI on Metaworld: collect -> train -> eval of the trained checkpoint."""

from __future__ import annotations

import json

from fixtures import TINY_DIFFUSION as TINY

from visuomotor.cli import main
from visuomotor.datasets import EpisodeStore


def test_collect_train_eval_with_images(tmp_path):
    store, run, report = tmp_path / "s.zarr", tmp_path / "run", tmp_path / "eval.json"
    env = "metaworld/reach-v3"
    assert main(["collect", "--env", env, "--episodes", "2", "--out", str(store), "--image-size", "32"]) == 0
    assert EpisodeStore.open(store).num_episodes == 2
    assert (
        main(
            [
                "train",
                "--policy",
                "diffusion",
                "--data",
                str(store),
                "--out",
                str(run),
                "--steps",
                "6",
                "--cameras",
                "corner2",
                "-t",
                "save_every=3",
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    videos = tmp_path / "videos"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(run),
                "--env",
                env,
                "--episodes",
                "2",
                "--max-steps",
                "30",
                "--json",
                str(report),
                "--video",
                str(videos),
                "--videos-per-task",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    assert result["mean_inference_ms"] > 0  # the learned policy ran in the workers
    assert len(list(videos.glob("*.mp4"))) == 1
