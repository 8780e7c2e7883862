"""End to end through the real CLI on Metaworld: collect -> train -> eval of the trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures import TINY_DIFFUSION as TINY

from visuomotor.cli import main
from visuomotor.datasets import EpisodeStore

ENV = "metaworld/reach-v3"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two scripted reach episodes with a 32 px camera, collected once for the module."""
    path = tmp_path_factory.mktemp("data") / "s.zarr"
    assert main(["collect", "--env", ENV, "--episodes", "2", "--out", str(path), "--image-size", "32"]) == 0
    assert EpisodeStore.open(path).num_episodes == 2
    return path


def train(store: Path, run: Path, steps: int, *extra: str) -> int:
    args = ["train", "--policy", "diffusion", "--data", str(store), "--out", str(run), "--steps", str(steps)]
    return main([*args, "--no-progress", *TINY, *extra])


def test_collect_train_eval_with_images(tmp_path, store):
    run, report, videos = tmp_path / "run", tmp_path / "eval.json", tmp_path / "videos"
    assert train(store, run, 6, "--cameras", "corner2", "-t", "save_every=3") == 0
    evaluate = ["eval", "--checkpoint", str(run), "--env", ENV, "--episodes", "2", "--max-steps", "30"]
    assert main([*evaluate, "--json", str(report), "--video", str(videos), "--videos-per-task", "1"]) == 0
    result = json.loads(report.read_text())
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0
    assert result["mean_inference_ms"] > 0  # the learned policy ran in the workers
    assert len(list(videos.glob("*.mp4"))) == 1
    import imageio.v2 as imageio

    first = imageio.get_reader(next(videos.glob("*.mp4"))).get_data(0)
    assert first.shape[1] == 2 * first.shape[0]  # the rendered view, then the policy's centre crop


def test_an_image_checkpoint_refuses_views_it_was_not_trained_on(tmp_path, store, capsys):
    run = tmp_path / "run"
    assert train(store, run, 2, "--cameras", "corner2") == 0
    evaluate = ["eval", "--checkpoint", str(run), "--episodes", "1", "--max-steps", "5"]
    assert main([*evaluate, "--env", ENV, "--image-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "32x32 'observation.images.corner2'" in err and "64x64" in err
    assert main([*evaluate, "--env", ENV, "--camera", "topview"]) == 2
    assert "'observation.images.corner2', but --camera renders only ['topview']" in capsys.readouterr().err
    assert main([*evaluate, "--env", "robosuite/Lift"]) == 2
    assert "which robosuite/Lift does not have" in capsys.readouterr().err


def test_training_with_periodic_rollouts_tracks_the_best_checkpoint(tmp_path, store):
    run = tmp_path / "run"
    rollouts = ["--eval-every", "2", "--eval-episodes", "1", "-t", "eval_workers=1", "-t", "save_every=2"]
    state = ["--cameras", "none", "-o", "state_keys=observation.environment_state"]
    assert train(store, run, 2, *rollouts, *state) == 0
    history = json.loads((run / "metrics.json").read_text())
    evals = [h for h in history if "success_rate" in h]
    assert [h["step"] for h in evals] == [2]
    best = (run / "checkpoints" / "best").resolve()
    first_max = max(evals, key=lambda h: h["success_rate"])  # max() keeps the first of equal ones
    assert best.name == f"step-{first_max['step']:07d}" and (best / "pretrained_model").is_dir()
    assert (run / "success.png").exists()
    state = json.loads((run / "checkpoints" / "last" / "training_state" / "state.json").read_text())
    assert [h["step"] for h in state["history"] if "success_rate" in h] == [2]
    assert state["best"]["step"] == int(best.name.split("-")[1])


def test_relative_state_trains_and_evaluates_on_metaworld(tmp_path, store):
    run = tmp_path / "run"
    assert train(store, run, 4, "--relative-state") == 0
    config = json.loads((run / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())[
        "config"
    ]
    assert config["state_keys"] == ["observation.environment_state"]
    assert [36, 0, 3] in config["state_differences"]  # goal - hand
    assert 0 not in config["state_dims"] and 36 not in config["state_dims"]  # no absolute positions
    evaluate = ["eval", "--checkpoint", str(run), "--env", ENV, "--episodes", "1", "--max-steps", "20"]
    assert main([*evaluate, "--workers", "1", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["episodes"] == 1


def test_deploy_on_a_simulated_robot_records_what_it_sent(tmp_path, store, capsys):
    run = tmp_path / "run"
    assert train(store, run, 2, "--cameras", "corner2") == 0
    deploy = ["deploy", "--checkpoint", str(run), "--robot", f"sim:{ENV}", "--fps", "50", "--max-steps", "8"]
    assert main([*deploy, "--record", str(tmp_path / "rec.zarr"), "--json", str(tmp_path / "d.json")]) == 0
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["episodes"] == 1 and summary["per_episode"][0]["ticks"] == 8
    from visuomotor.eval.compare import load_episodes
    from visuomotor.eval.rollout import EVAL_SEED_BASE

    assert load_episodes(tmp_path / "d.json").keys() == {(ENV, EVAL_SEED_BASE)}  # pairs with eval's episodes
    rec = EpisodeStore.open(tmp_path / "rec.zarr")
    assert rec.num_episodes == 1 and rec.episode_lengths.tolist() == [8]
    episode = rec.episode(0)
    assert episode["observation.images.corner2"].shape == (8, 32, 32, 3)
    assert (np.abs(episode["action"]) <= 1).all() and episode["deploy.safety"].shape == (8,)
    assert main(["deploy", "--checkpoint", str(run), "--robot", "ur5:arm"]) == 2
    assert "unknown robot 'ur5:arm'" in capsys.readouterr().err

    # The same checkpoint behind a policy server, with a token: deploy takes its actions from there.
    from visuomotor.policies import inspect_checkpoint, load_policy
    from visuomotor.real_robot.remote.server import PolicyServer, metadata_of

    info = inspect_checkpoint(run)
    policy = load_policy(run)
    server = PolicyServer(policy, metadata_of(policy, info.weights_digest(), policy.dataset), token="x" * 16)
    (tmp_path / "token").write_text("x" * 16)
    with server.serve_in_background() as url:
        remote = ["deploy", "--server", url, "--token-file", str(tmp_path / "token"), "--robot", f"sim:{ENV}"]
        assert main([*remote, "--fps", "50", "--max-steps", "6", "--json", str(tmp_path / "r.json")]) == 0
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["per_episode"][0]["ticks"] == 6 and summary["policy_failures"] == 0
    assert server.counts["requests"] >= 1 and server.counts["errors"] == 0
