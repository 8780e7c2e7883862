"""Expert collection into an episode store, on the fake simulator (fast) and through the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from visuomotor.datasets import EpisodeStore
from visuomotor.eval.rollout import EVAL_SEED_BASE, EnvConfig
from visuomotor.sim.collect import collect

FAKE = EnvConfig(cameras=("corner2",), sim_module="test_eval_fake_env", image_size=16)
REPO = Path(__file__).resolve().parents[1]


def _seeds(store: EpisodeStore, env_id: str | None = None) -> list[int]:
    metas = [store.episode_meta(i) for i in range(store.num_episodes)]
    return [m["seed"] for m in metas if env_id is None or m["env_id"] == env_id]


def test_collect_successes_per_task_with_task_text(tmp_path):
    out = tmp_path / "s.zarr"
    report = collect("fake/ALL", 3, out, env_cfg=FAKE, workers=2, progress=False)
    assert report.saved == 6 and report.per_task["fake/reach"]["kept"] == 3
    store = EpisodeStore.open(out)
    assert store.num_episodes == 6
    assert set(store.keys) == {
        "action",
        "observation.state",
        "observation.environment_state",
        "observation.images.corner2",
    }
    assert sorted(store.tasks) == ["reach the goal (fake/reach)", "reach the goal (fake/reach-far)"]
    for i in range(store.num_episodes):
        ep = store.episode(i)
        meta = store.episode_meta(i)
        assert meta["success"] is True and 0 <= meta["seed"] < EVAL_SEED_BASE
        assert store.task(i) == f"reach the goal ({meta['env_id']})"
        assert ep["observation.images.corner2"].dtype == np.uint8
        assert ep["observation.images.corner2"].shape[1:] == (16, 16, 3)
        assert ep["action"].dtype == np.float32 and len(ep["action"]) == len(ep["observation.state"])
        # The fake expert overshoots the action bounds; what is recorded is the executed, clipped action.
        assert np.abs(ep["action"]).max() <= 1.0
    attrs = store.attrs
    assert attrs["env_id"] == "fake/ALL" and attrs["fps"] == 10
    assert attrs["cameras"] == ["corner2"] and attrs["image_size"] == 16
    assert attrs["camera_info"]["corner2"]["size"] == 16
    assert attrs["collection"]["seed"] == 0 and attrs["collection"]["action_noise"] == 0.0
    assert attrs["action_space"]["shape"] == [2]
    assert sorted(_seeds(store, "fake/reach")) == [0, 1, 2]


def test_append_continues_seeds_and_checks_settings(tmp_path):
    out = tmp_path / "s.zarr"
    collect("fake/reach", 2, out, env_cfg=FAKE, workers=1, progress=False)
    report = collect("fake/reach", 2, out, env_cfg=FAKE, workers=2, progress=False)
    assert report.saved == 2 and report.total_episodes == 4
    store = EpisodeStore.open(out)
    assert sorted(_seeds(store)) == [0, 1, 2, 3]  # no seed replayed
    with pytest.raises(ValueError, match=r"cannot append.*image size 16 \(asked for 32\)"):
        collect(
            "fake/reach", 1, out, env_cfg=EnvConfig(sim_module=FAKE.sim_module, image_size=32), progress=False
        )
    with pytest.raises(
        ValueError, match=r"cannot append.*env id 'fake/reach' \(asked for 'fake/reach-far'\)"
    ):
        collect("fake/reach-far", 1, out, env_cfg=FAKE, progress=False)
    with pytest.raises(ValueError, match=r"cannot append.*cameras"):
        cfg = EnvConfig(cameras=("top",), sim_module=FAKE.sim_module, image_size=16)
        collect("fake/reach", 1, out, env_cfg=cfg, progress=False)
    assert EpisodeStore.open(out).num_episodes == 4


def test_action_noise_recorded_and_clipped(tmp_path):
    out = tmp_path / "s.zarr"
    collect("fake/reach", 2, out, env_cfg=FAKE, workers=1, action_noise=0.5, keep_failed=True, progress=False)
    store = EpisodeStore.open(out)
    assert store.attrs["collection"]["action_noise"] == 0.5
    actions = np.concatenate([store.episode(i)["action"] for i in range(store.num_episodes)])
    assert np.abs(actions).max() <= 1.0
    # Noise makes actions vary off the expert's saturated ±1 values.
    assert np.mean(np.abs(np.abs(actions) - 1.0) > 1e-3) > 0.3
    assert all(store.episode_meta(i)["action_noise"] == 0.5 for i in range(store.num_episodes))


def test_settle_steps_record_the_expert_past_the_first_success(tmp_path):
    plain, settled = tmp_path / "plain.zarr", tmp_path / "settled.zarr"
    collect("fake/reach", 2, plain, env_cfg=FAKE, workers=1, progress=False)
    collect("fake/reach", 2, settled, env_cfg=FAKE, workers=1, settle_steps=3, progress=False)
    a, b = EpisodeStore.open(plain), EpisodeStore.open(settled)
    assert [n + 3 for n in a.episode_lengths] == list(b.episode_lengths)  # same seeds, 3 more steps each
    for i in range(2):
        first, more = a.episode(i), b.episode(i)
        n = len(first["action"])
        np.testing.assert_array_equal(more["action"][:n], first["action"])  # the same episode up to success
        assert b.episode_meta(i)["success"] is True and b.episode_meta(i)["settle_steps"] == 3
    assert b.attrs["collection"]["settle_steps"] == 3
    with pytest.raises(ValueError, match="settle-steps"):
        collect("fake/reach", 1, tmp_path / "bad.zarr", env_cfg=FAKE, settle_steps=-1, progress=False)


def test_keep_failed_keeps_everything(tmp_path):
    out = tmp_path / "s.zarr"
    report = collect("fake/never", 3, out, env_cfg=FAKE, workers=2, keep_failed=True, progress=False)
    assert report.saved == 3 and report.successes == 0
    store = EpisodeStore.open(out)
    assert [store.episode_meta(i)["success"] for i in range(3)] == [False] * 3
    assert all(n == 30 for n in store.episode_lengths)


def test_expert_that_never_succeeds_errors_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"fake/never: no success in the first \d+ attempts.*--keep-failed"):
        collect("fake/never", 2, tmp_path / "s.zarr", env_cfg=FAKE, workers=2, max_attempts=6, progress=False)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown env id"):
        collect("fake/nope", 1, tmp_path / "s.zarr", env_cfg=FAKE, progress=False)
    with pytest.raises(ValueError, match="episodes"):
        collect("fake/reach", 0, tmp_path / "s.zarr", env_cfg=FAKE, progress=False)
    with pytest.raises(ValueError, match="action-noise"):
        collect("fake/reach", 1, tmp_path / "s.zarr", env_cfg=FAKE, action_noise=-1, progress=False)
    assert not (tmp_path / "s.zarr").exists()


# ----------------------------------------------------------------------------------- real simulator, CLI


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    return subprocess.run(
        [sys.executable, "-m", "visuomotor.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        **kw,
    )


def test_cli_unknown_env_id(tmp_path):
    r = _cli("collect", "--env", "metaworld/nope-v3", "--episodes", "1", "--out", str(tmp_path / "s.zarr"))
    assert r.returncode == 2
    assert "error: unknown env id 'metaworld/nope-v3'" in r.stderr and "metaworld/reach-v3" in r.stderr
    r = _cli("eval", "--policy", "scripted", "--env", "metaworld/nope-v3", "--episodes", "1")
    assert r.returncode == 2 and "error: unknown env id" in r.stderr
    r = _cli("eval", "--policy", "scripted", "--env", "metaworld/reach-v3", "--n-action-steps", "4")
    assert r.returncode == 2 and "--n-action-steps applies to --checkpoint" in r.stderr
    r = _cli("eval", "--policy", "scripted", "--env", "metaworld/reach-v3", "-o", "top_k=2")
    assert r.returncode == 2 and "-o/--policy-override applies to --checkpoint" in r.stderr


@pytest.mark.slow
def test_cli_collect_real_then_append(tmp_path):
    out = tmp_path / "reach.zarr"
    args = ("collect", "--env", "metaworld/reach-v3", "--out", str(out), "--image-size", "64")
    r = _cli(*args, "--episodes", "2", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "saved 2 episodes" in r.stdout
    r = _cli(*args, "--episodes", "1", timeout=300)
    assert r.returncode == 0, r.stderr
    store = EpisodeStore.open(out)
    assert store.num_episodes == 3
    assert sorted(_seeds(store)) == [0, 1, 2]
    ep = store.episode(2)
    assert ep["observation.images.corner2"].shape[1:] == (64, 64, 3)
    assert store.attrs["fps"] == 80 and store.attrs["image_size"] == 64
    assert store.task(0) and all(store.episode_meta(i)["success"] for i in range(3))
    # Appending with other settings is refused with a clear message; the store is untouched.
    r = _cli(
        "collect", "--env", "metaworld/reach-v3", "--out", str(out), "--image-size", "32", "--episodes", "1"
    )
    assert r.returncode == 2 and "cannot append" in r.stderr and "image size 64" in r.stderr
    assert EpisodeStore.open(out).num_episodes == 3


EPISODES_TO_INTERRUPT = 2000


def _start_collect(out: Path) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    cmd = [sys.executable, "-m", "visuomotor.cli", "collect", "--env", "metaworld/reach-v3"]
    return subprocess.Popen(
        # Far more episodes than can finish before the signal (reach runs at ~4 episodes/s here): the
        # collector must still be running when the test interrupts it.
        [*cmd, "--episodes", str(EPISODES_TO_INTERRUPT), "--out", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _wait_for_episodes(proc: subprocess.Popen, out: Path, n: int, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if (out / "zarr.json").exists():
            try:
                k = EpisodeStore.open(out).num_episodes
            except Exception:  # the writer may be mid-commit; try again
                k = 0
            if k >= n:
                return k
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("no episode committed in time")


def _check_intact(out: Path, at_least: int) -> EpisodeStore:
    store = EpisodeStore.open(out)
    assert store.num_episodes >= at_least
    store.check_chunks()
    for i in range(store.num_episodes):
        ep = store.episode(i)
        assert len(ep["action"]) == store.episode_lengths[i] == len(ep["observation.images.corner2"])
    # And it can be appended to again (the killed writer's leftovers are dropped).
    EpisodeStore.open(out, mode="a")
    return store


def _collect_until_signalled(out: Path, sig: signal.Signals) -> tuple[int, int, str]:
    """Run `visuomotor collect`, send `sig` once an episode is in: (episodes seen, exit code, stderr)."""
    proc = _start_collect(out)
    try:
        seen = _wait_for_episodes(proc, out, 1)
    finally:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    return seen, proc.returncode, stderr


@pytest.mark.slow
def test_cli_collect_sigkill_keeps_committed_episodes(tmp_path):
    out = tmp_path / "killed.zarr"
    seen, _, _ = _collect_until_signalled(out, signal.SIGKILL)
    store = _check_intact(out, seen)
    assert store.num_episodes < EPISODES_TO_INTERRUPT


@pytest.mark.slow
def test_cli_collect_ctrl_c_saves_and_reports(tmp_path):
    out = tmp_path / "interrupted.zarr"
    seen, returncode, stderr = _collect_until_signalled(out, signal.SIGINT)
    assert returncode == 130, stderr
    assert "interrupted" in stderr
    store = _check_intact(out, seen)
    assert f"{store.num_episodes} episodes of this run committed" in stderr


@pytest.mark.slow
def test_cli_eval_ctrl_c_stops_the_workers_and_exits(tmp_path):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    cmd = [sys.executable, "-m", "visuomotor.cli", "eval", "--policy", "scripted"]
    proc = subprocess.Popen(
        [*cmd, "--env", "metaworld/reach-v3", "--episodes", "5000", "--workers", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while "success=" not in "".join(seen):  # an episode is done: the result loop is running
        assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 130, "".join(seen)
    finally:
        proc.kill()
    reader.join(5)
