"""The rollout runner on the fake simulator: counts, seeds, JSON, video, plot, errors."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from visuomotor.eval import EVAL_SEED_BASE, EnvConfig, PolicySpec, evaluate
from visuomotor.eval.policies import REFERENCE_POLICIES
from visuomotor.eval.rollout import plot_success, write_json
from visuomotor.policies import inspect_checkpoint

FAKE = EnvConfig(sim_module="test_eval_fake_env", image_size=16)


@pytest.fixture(scope="module")
def scripted_report(tmp_path_factory):
    video_dir = tmp_path_factory.mktemp("videos")
    report = evaluate(
        "fake/ALL",
        PolicySpec(name="scripted"),
        4,
        env_cfg=FAKE,
        workers=2,
        video_dir=video_dir,
        videos_per_task=2,
    )
    return report, video_dir


def test_counts_and_per_task(scripted_report):
    report, _ = scripted_report
    assert report.overall.episodes == 8
    assert list(report.per_task) == ["fake/reach", "fake/reach-far"]
    for summary in report.per_task.values():
        assert summary.episodes == 4
        assert summary.success_rate == 1.0  # the fake expert always reaches its goal
        assert summary.ci95[1] == 1.0 and summary.ci95[0] < 1.0
    # Episodes stop at success, well before the 30-step limit.
    assert all(r.success and r.length < 30 for r in report.episodes)
    table = report.table()
    assert "fake/reach-far" in table and "100.0%" in table


def test_seeds_fixed_and_disjoint_from_collection(scripted_report):
    report, _ = scripted_report
    for tid in report.per_task:
        assert [r.seed for r in report.episodes if r.env_id == tid] == [EVAL_SEED_BASE + i for i in range(4)]
    assert min(r.seed for r in report.episodes) >= EVAL_SEED_BASE  # collection counts up from 0
    again = evaluate("fake/reach", PolicySpec(name="scripted"), 2, env_cfg=FAKE, workers=1, seed_offset=100)
    assert [r.seed for r in again.episodes] == [EVAL_SEED_BASE + 100, EVAL_SEED_BASE + 101]


def test_json_fields(scripted_report, tmp_path):
    report, _ = scripted_report
    data = json.loads(write_json(report, tmp_path / "out.json").read_text())
    for key in ("env", "episodes", "success_rate", "ci95", "per_task", "mean_inference_ms"):
        assert key in data
    assert data["env"] == "fake/ALL" and data["episodes"] == 8 and data["success_rate"] == 1.0
    assert len(data["ci95"]) == 2 and data["ci95"][0] < 1.0
    task = data["per_task"]["fake/reach"]
    assert set(task) >= {"success_rate", "ci95", "episodes", "mean_return", "mean_length"}
    assert data["mean_inference_ms"] >= 0
    assert len(data["episode_results"]) == 8


def test_videos_written_and_readable(scripted_report):
    report, video_dir = scripted_report
    videos = sorted(video_dir.glob("*.mp4"))
    assert len(videos) == 4  # 2 per task
    recorded = [r for r in report.episodes if r.video]
    assert {r.episode for r in recorded} == {0, 1}
    ep = recorded[0]
    frames = np.stack([f for f in imageio.get_reader(ep.video)])
    assert len(frames) == ep.length + 1  # the reset frame plus one per step
    assert frames.shape[1] >= 256  # 16 px frames upscaled to be watchable
    # Success is drawn in: the last frame has a green border.
    r, g, b = frames[-1, 1, frames.shape[2] // 2].astype(int)
    assert g > 150 and r < 120 and b < 120


def test_plot_png(scripted_report, tmp_path):
    report, _ = scripted_report
    path = plot_success(report, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_fails_and_is_reproducible(tmp_path):
    a = evaluate(
        "fake/reach",
        PolicySpec(name="random"),
        3,
        env_cfg=FAKE,
        workers=2,
        video_dir=tmp_path,
        videos_per_task=1,
    )
    assert a.overall.success_rate == 0.0
    assert all(r.length == 30 for r in a.episodes)  # ran to the step limit
    frames = np.stack([f for f in imageio.get_reader(a.episodes[0].video)])
    r, g, _ = frames[0, 1, frames.shape[2] // 2].astype(int)
    assert r > 150 and g < 120  # failure: red border
    b_ = evaluate("fake/reach", PolicySpec(name="random"), 3, env_cfg=FAKE, workers=1)
    assert [r.episode_return for r in a.episodes] == [r.episode_return for r in b_.episodes]


def test_unknown_env_id_lists_valid_ids():
    with pytest.raises(ValueError, match=r"unknown env id 'fake/nope'.*fake/reach"):
        evaluate("fake/nope", PolicySpec(name="random"), 1, env_cfg=FAKE)


def test_worker_exception_reaches_the_caller():
    with pytest.raises(RuntimeError, match="simulator exploded"):
        evaluate("fake/crash", PolicySpec(name="random"), 2, env_cfg=FAKE, workers=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="episodes"):
        evaluate("fake/reach", PolicySpec(name="random"), 0, env_cfg=FAKE)
    with pytest.raises(ValueError, match="videos-per-task needs --video"):
        evaluate("fake/reach", PolicySpec(name="random"), 1, env_cfg=FAKE, videos_per_task=2)
    with pytest.raises(ValueError, match="unknown policy"):
        PolicySpec(name="nope")


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        inspect_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        inspect_checkpoint(str(tmp_path))  # a directory, but neither a checkpoint nor a run


def test_cli_policy_choices_match_registry():
    from visuomotor.commands.eval import REFERENCE_POLICY_NAMES

    assert set(REFERENCE_POLICY_NAMES) == set(REFERENCE_POLICIES)
