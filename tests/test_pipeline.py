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


def test_training_with_periodic_rollouts_tracks_the_best_checkpoint(tmp_path):
    store, run = tmp_path / "s.zarr", tmp_path / "run"
    assert main(["collect", "--env", "metaworld/reach-v3", "--episodes", "2", "--out", str(store)]) == 0
    args = [
        "train",
        "--policy",
        "diffusion",
        "--data",
        str(store),
        "--out",
        str(run),
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--eval-episodes",
        "1",
        "-t",
        "eval_workers=1",
        "-t",
        "save_every=2",
        "-o",
        "state_keys=observation.environment_state",
        "--no-progress",
        *TINY,
    ]
    assert main(args) == 0
    history = json.loads((run / "metrics.json").read_text())
    evals = [h for h in history if "success_rate" in h]
    assert [h["step"] for h in evals] == [2, 4]
    best = (run / "checkpoints" / "best").resolve()
    assert best.name in ("step-0000002", "step-0000004") and (best / "pretrained_model").is_dir()
    assert (run / "success.png").exists()
    state = json.loads((run / "checkpoints" / "last" / "training_state" / "state.json").read_text())
    assert [h["step"] for h in state["history"] if "success_rate" in h] == [2, 4]
    assert state["best"]["step"] == int(best.name.split("-")[1])
