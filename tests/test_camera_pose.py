"""Metaworld's corner2 pose travels with the data: collect records it, appends keep it, a policy trained
on it is evaluated and deployed from it, and another pose is refused with both named."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from fixtures import run_cli

from visuomotor.datasets import EpisodeStore
from visuomotor.eval.rollout import EnvConfig
from visuomotor.sim.collect import collect
from visuomotor.sim.registry import camera_pose_of
from visuomotor.sim.workers import load_sim, make_worker_env

TASK = "metaworld/reach-v3"
IMAGE = "observation.images.corner2"


def _collect(out, episodes: int, pose: str | None):
    cfg = EnvConfig(cameras=("corner2",), image_size=16, camera_pose=pose)
    return collect(TASK, episodes, out, env_cfg=cfg, workers=1, progress=False)


def _first_frame(pose: str) -> np.ndarray:
    env = make_worker_env(load_sim(), TASK, EnvConfig(cameras=("corner2",), image_size=16, camera_pose=pose))
    try:
        return env.reset(seed=0)[0][IMAGE]
    finally:
        env.close()


@pytest.fixture(scope="module")
def dp3_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("pose") / "reach_dp3.zarr"
    _collect(out, 1, "dp3")
    return out


def test_collect_records_the_pose_and_appends_keep_it(dp3_store, tmp_path):
    store = EpisodeStore.open(dp3_store)
    assert camera_pose_of(store.attrs) == "dp3"
    # The frames are the dp3 view (seed 0 is the first collection seed), not the default one.
    first = store.episode(0)[IMAGE][0]
    assert np.array_equal(first, _first_frame("dp3"))
    assert not np.array_equal(first, _first_frame("lerobot"))

    copy = tmp_path / "copy.zarr"
    _collect(copy, 1, "dp3")
    with pytest.raises(ValueError, match="camera pose 'dp3' \\(asked for 'lerobot'\\)"):
        _collect(copy, 1, "lerobot")
    _collect(copy, 1, None)  # no pose asked: the store's
    store = EpisodeStore.open(copy)
    assert store.num_episodes == 2 and camera_pose_of(store.attrs) == "dp3"
    other_seed = store.episode(1)[IMAGE][0]
    env = make_worker_env(load_sim(), TASK, EnvConfig(cameras=("corner2",), image_size=16, camera_pose="dp3"))
    assert np.array_equal(other_seed, env.reset(seed=1)[0][IMAGE])
    env.close()


def test_bad_poses_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown camera pose 'nowhere'"):
        _collect(tmp_path / "a.zarr", 1, "nowhere")
    cfg = EnvConfig(cameras=("agentview",), image_size=16, camera_pose="dp3")
    with pytest.raises(ValueError, match="Metaworld's corner2 camera only, not to robosuite/Lift"):
        collect("robosuite/Lift", 1, tmp_path / "b.zarr", env_cfg=cfg, workers=1, progress=False)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_policy_is_evaluated_from_the_pose_it_was_trained_on(dp3_store, tmp_path):
    from visuomotor.commands.eval import _policy_and_views
    from visuomotor.policies import inspect_checkpoint

    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "--policy", "diffusion", "--data", str(dp3_store), "--out", str(run), "--preset", "cpu",
         "--cameras", "corner2", "--steps", "2", "--no-progress", "-t", "save_every=2"]
    )  # fmt: skip
    assert code == 0, err
    assert inspect_checkpoint(run).camera_pose == "dp3"
    args = argparse.Namespace(
        checkpoint=str(run), lerobot_checkpoint=None, policy=None, env=TASK, camera=None, image_size=None,
        camera_pose=None, policy_override=[], n_action_steps=None,
    )  # fmt: skip
    assert _policy_and_views(args).camera_pose == "dp3"
    code, _, err = run_cli(["eval", "--checkpoint", str(run), "--env", TASK, "--episodes", "1",
                            "--camera-pose", "lerobot", "--workers", "1"])  # fmt: skip
    assert code == 2 and "trained on images from camera pose 'dp3'" in err and "--camera-pose lerobot" in err
    code, _, err = run_cli(["eval", "--checkpoint", str(run), "--env", TASK, "--episodes", "1",
                              "--max-steps", "3", "--workers", "1"])  # fmt: skip
    assert code == 0, err
