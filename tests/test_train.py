"""The training engine: a smoke run, exact resume after SIGKILL, DDP on 2 CPU processes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, make_store
from fixtures import TINY_DIFFUSION as TINY
from safetensors.torch import load_file

from visuomotor.cli import main
from visuomotor.policies import load_policy
from visuomotor.train import train

TRAIN = ["-t", "save_every=4", "-t", "log_every=2", "-t", "warmup_steps=2", "--no-progress"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "s.zarr"
    make_store(path, episodes=3, lengths=[20, 16, 18], image_hw=16, tasks=["reach", "push", "reach"])
    return path


def train_args(store: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train",
        "--policy",
        "diffusion",
        "--data",
        str(store),
        "--out",
        str(out),
        "--steps",
        str(steps),
        *TINY,
        *TRAIN,
        *extra,
    ]


def test_train_writes_run_and_checkpoints(tmp_path, store_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store_path, out, 8, "--cameras", "top")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["final_loss"] > 0
    ckpt = out / "checkpoints"
    assert os.readlink(ckpt / "last") == "step-0000008"
    assert (ckpt / "step-0000004").is_dir()  # keep_checkpoints=2
    for name in ("loss.png", "metrics.json", "run.json"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").iterdir())
    policy = load_policy(out)  # a run directory resolves to its last checkpoint
    assert policy.config.image_keys == (IMAGE_KEY,)
    assert policy.config.tasks == ["reach", "push"]  # task conditioning from the store's task texts
    obs = {
        "observation.state": torch.rand(1, 4),
        IMAGE_KEY: torch.zeros(1, 16, 16, 3, dtype=torch.uint8),
        "task": ["push"],
    }
    assert policy.select_action(obs).shape == (1, 2)


def test_existing_run_is_never_overwritten(tmp_path, store_path):
    out = tmp_path / "run"
    assert main(train_args(store_path, out, 4)) == 0
    before = (out / "checkpoints" / "step-0000004" / "pretrained_model" / "model.safetensors").read_bytes()
    assert main(train_args(store_path, out, 4)) == 2  # refused: "already holds a run"
    after = (out / "checkpoints" / "step-0000004" / "pretrained_model" / "model.safetensors").read_bytes()
    assert before == after


def test_store_that_does_not_match_the_policy(tmp_path, store_path, capsys):
    assert main(train_args(store_path, tmp_path / "a", 4, "--cameras", "wrist")) == 2
    assert "observation.images.wrist" in capsys.readouterr().err
    assert main(train_args(store_path, tmp_path / "b", 4, "-o", 'state_keys=["observation.joints"]')) == 2
    assert "observation.joints" in capsys.readouterr().err
    assert main(train_args(store_path, tmp_path / "c", 4, "-o", "no_such_field=1")) == 2
    assert "no_such_field" in capsys.readouterr().err


def test_a_new_run_sees_the_store_cameras_unless_told_otherwise(tmp_path, store_path, caplog):
    def image_keys(run: Path) -> list[str]:
        return json.loads((run / "run.json").read_text())["policy_config"]["image_keys"]

    caplog.set_level("INFO", logger="visuomotor.train")
    assert main(train_args(store_path, tmp_path / "default", 2)) == 0
    assert image_keys(tmp_path / "default") == ["observation.images.top"]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inputs:")]
    assert said == ["inputs: observation.state 4, observation.images.top 16x16x3, task (2 tasks)"]
    assert main(train_args(store_path, tmp_path / "blind", 2, "--cameras", "none")) == 0
    assert image_keys(tmp_path / "blind") == []
    assert main(train_args(store_path, tmp_path / "explicit", 2, "-o", "image_keys=[]")) == 0
    assert image_keys(tmp_path / "explicit") == []


def test_an_expo_run_reads_low_dim_state_unless_told_otherwise(tmp_path, store_path, caplog):
    # EXPO's online learner reads low-dim state only, so its BC run (the --init checkpoint) must not
    # pick up the store's cameras by default; --cameras still wins.
    def expo_args(out: Path, *extra: str) -> list[str]:
        return ["train", "--policy", "expo", "--data", str(store_path), "--out", str(out), "--steps", "2",
                "-o", "hidden_dim=16", "-o", "num_blocks=1", "-o", "action_norm=min_max", *TRAIN, *extra]  # fmt: skip

    caplog.set_level("INFO", logger="visuomotor.train")
    assert main(expo_args(tmp_path / "expo")) == 0
    config = json.loads((tmp_path / "expo" / "run.json").read_text())["policy_config"]
    assert config["image_keys"] == []
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inputs:")]
    assert said == ["inputs: observation.state 4, task (2 tasks)"]
    assert main(expo_args(tmp_path / "seeing", "--cameras", "top")) == 0
    config = json.loads((tmp_path / "seeing" / "run.json").read_text())["policy_config"]
    assert config["image_keys"] == ["observation.images.top"]


def test_an_expo_run_reads_the_full_low_dim_state_when_the_store_has_it(tmp_path, caplog):
    # The proprio state cannot see the goal: EXPO's default input is the environment state (object and
    # goal) when the store records it, offline and online from scratch; an explicit state_keys wins.
    from visuomotor.policies.expo.toyenv import collect_demos

    store = tmp_path / "demos.zarr"
    collect_demos(store, 3, max_steps=10)
    tiny = ["-o", "hidden_dim=16", "-o", "num_blocks=1", "-o", "num_qs=2", "-o", "edit_hidden=[8]",
            "-o", "critic_hidden=[8]", "--no-progress"]  # fmt: skip
    offline = ["train", "--policy", "expo", "--data", str(store), "--steps", "2", "-t", "save_every=2", *tiny]
    online = ["train", "--policy", "expo", "--data", str(store), "--env", "toy/pointmass", "--online-steps", "4",
              "-t", "random_steps=2", "-t", "batch_size=4", "-t", "eval_episodes=0", "-t", "utd=1", *tiny]  # fmt: skip
    caplog.set_level("INFO", logger="visuomotor.train")
    assert main([*offline, "--out", str(tmp_path / "bc")]) == 0
    assert main([*online, "--out", str(tmp_path / "online")]) == 0
    assert main([*offline, "--out", str(tmp_path / "proprio"), "-o", 'state_keys=["observation.state"]']) == 0
    read = [load_policy(tmp_path / run).config.state_keys for run in ("bc", "online", "proprio")]
    assert read == [("observation.environment_state",)] * 2 + [("observation.state",)]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inputs:")]
    assert said[0] == "inputs: observation.environment_state 6"


def test_a_policy_that_sees_a_camera_trains_longer_by_default():
    from visuomotor.policies import make_config
    from visuomotor.train import IMAGE_STEPS, TRAIN_PRESETS, preset_train_config

    blind = make_config("diffusion", "cpu")
    seeing = make_config("diffusion", "cpu", image_keys=[IMAGE_KEY])
    assert preset_train_config("cpu", blind).steps == TRAIN_PRESETS["cpu"]["steps"] == 3000
    assert preset_train_config("cpu", seeing).steps == IMAGE_STEPS["cpu"] == 6000
    assert preset_train_config("paper", seeing).steps == TRAIN_PRESETS["paper"]["steps"]


def test_relative_state_needs_a_metaworld_store(tmp_path, store_path, capsys):
    assert main(train_args(store_path, tmp_path / "run", 2, "--relative-state")) == 2
    err = capsys.readouterr().err
    assert "--relative-state knows the layout of Metaworld's environment state only" in err
    assert "'test-env-v0'" in err
    assert not (tmp_path / "run").exists()


def test_resume_of_a_run_with_different_shapes_is_refused(tmp_path, store_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(store_path, out, 4)) == 0
    run = json.loads((out / "run.json").read_text())
    run["policy_config"]["input_shapes"]["observation.state"] = [7]
    (out / "run.json").write_text(json.dumps(run))
    assert main(["train", "--policy", "diffusion", "--out", str(out), "--resume", "--steps", "8"]) == 2
    assert "observation.state" in capsys.readouterr().err


KILLER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from visuomotor.cli import main

    kill_at = int(os.environ["KILL_AT_OPTIMIZER_STEP"])
    calls = {"n": 0}
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = step
    sys.exit(main(sys.argv[1:]))
    """
)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, store_path):
    steps = 14
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    args = ["--cameras", "top"]
    assert main(train_args(store_path, full, steps, *args)) == 0

    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "KILL_AT_OPTIMIZER_STEP": "11"}  # after the step-8 checkpoint, mid-way to 12
    proc = subprocess.run(
        [sys.executable, str(script), *train_args(store_path, resumed, steps, *args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert os.readlink(resumed / "checkpoints" / "last") == "step-0000008"
    assert not (resumed / "summary.json").exists()

    assert main(["train", "--policy", "diffusion", "--out", str(resumed), "--resume", "--no-progress"]) == 0
    for part in ("training_state/model.safetensors", "pretrained_model/model.safetensors"):
        a = load_file(str(full / "checkpoints" / f"step-{steps:07d}" / part))
        b = load_file(str(resumed / "checkpoints" / f"step-{steps:07d}" / part))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{part}:{key}")
    loss_full = [h["loss"] for h in json.loads((full / "metrics.json").read_text())]
    loss_resumed = [h["loss"] for h in json.loads((resumed / "metrics.json").read_text())]
    assert loss_full[-1] == pytest.approx(loss_resumed[-1], rel=1e-6)


def test_train_benchmark_times_every_stage_after_its_warm_up(tmp_path):
    from visuomotor.eval.bench import train as bench

    bench._store(tmp_path / "s.zarr", episodes=10, length=30)
    result = bench._child(str(tmp_path / "s.zarr"), str(tmp_path / "run"), "carp", "cpu", True, quick=True)
    timed, _warmup = bench.QUICK_STEPS
    assert result["inputs"] == "image" and result["batch_size"] == 64
    assert sorted(result["stages"]) == ["0", "1"]  # tokenizer, then transformer
    assert all(s["steps_timed"] == timed for s in result["stages"].values())
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    # samples/s counts each stage's own batch: the tokenizer's (256 windows), then the transformer's
    tokenizer_batch = run["policy_config"]["tokenizer_batch_size"]
    assert [(s["name"], s["batch_size"]) for s in run["stages"]] == [
        ("tokenizer", tokenizer_batch), ("transformer", 64)
    ]  # fmt: skip
    assert tokenizer_batch != 64
    for stage, batch in zip(result["stages"].values(), (tokenizer_batch, 64), strict=True):
        assert stage["batch_size"] == batch and stage["samples_per_s"] == pytest.approx(
            batch / stage["s_per_step"]
        )
    assert run["policy_config"]["image_keys"] == ["observation.images.corner2"]
    assert run["policy_config"]["state_keys"] == ["observation.state"]
    assert {(p, preset, image) for p, preset, image in bench.variants()} >= {
        ("diffusion", "cpu", True), ("diffusion", "paper", False), ("carp", "cpu", False), ("carp", "paper", True)
    }  # fmt: skip


@pytest.mark.parametrize("policy,image", [("pad", True), ("expo", False)])
def test_train_benchmark_store_trains_pad_and_expo(tmp_path, policy, image):
    """The benchmark's full-size store, which PAD (frame PSNR entries in its history) and EXPO (actions must
    lie in [-1, 1]) once failed on after every other variant had run."""
    from visuomotor.eval.bench import train as bench

    bench._store(tmp_path / "s.zarr")
    result = bench._child(str(tmp_path / "s.zarr"), str(tmp_path / "run"), policy, "cpu", image, quick=True)
    stages = 2 if policy == "pad" else 1  # PAD's cpu preset first fits its frame autoencoder
    assert [s["steps_timed"] for s in result["stages"].values()] == [bench.QUICK_STEPS[0]] * stages


def test_step_times_leave_out_each_stage_warm_up():
    from visuomotor.eval.bench.train import _step_times

    history = [{"wall_s": t, "stage": s} for t, s in [(1, 0), (3, 0), (4, 0), (10, 1), (12, 1), (15, 1)]]
    assert _step_times(history, warmup=1) == {0: [2, 1], 1: [2, 3]}
    assert _step_times(history, warmup=2) == {0: [1], 1: [3]}
    # PAD's frame PSNR (and an evaluation) sit in the history between steps: not steps.
    history.insert(2, {"step": 2, "frame_psnr": 20.0})
    history.append({"step": 6, "success_rate": 0.5, "ci95": [0.1, 0.9]})
    assert _step_times(history, warmup=1) == {0: [2, 1], 1: [2, 3]}


def test_train_benchmark_times_the_paper_pad_on_a_batch_that_fits():
    from visuomotor.eval.bench import train as bench

    _, pad_train = bench._overrides("pad", "paper", True, *bench._steps("pad", "paper", quick=False))
    _, dp_train = bench._overrides(
        "diffusion", "paper", True, *bench._steps("diffusion", "paper", quick=False)
    )
    assert pad_train["batch_size"] == "2" and pad_train["steps"] == "3"
    assert "batch_size" not in dp_train and dp_train["steps"] == str(sum(bench.STEPS["paper"]))
    assert bench._steps("pad", "paper", quick=True) == bench.QUICK_STEPS


def test_a_trained_policy_beats_the_random_one_on_an_easy_task(tmp_path):
    """End to end on the fake 2-D reaching task: scripted demonstrations, a small Diffusion Policy from
    the state (point and goal), rollouts on held-out seeds beside the random policy (all in this process)."""
    import test_eval_fake_env as fake

    from visuomotor.datasets import EpisodeStore
    from visuomotor.eval import EVAL_SEED_BASE, EnvConfig, PolicySpec
    from visuomotor.eval.rollout import EvalTask, run_eval_episode

    store = EpisodeStore.create(tmp_path / "s.zarr", fps=10, env_id="fake/reach")
    for seed in range(20):
        env, frames = fake.make_env("fake/reach", render=False), []
        obs, _ = env.reset(seed=seed)
        expert = fake.make_expert(env)
        for _ in range(env.max_episode_steps):
            action = np.clip(expert.act(obs), -1, 1)
            frames.append({**obs, "action": action})
            obs, _, done, _, _ = env.step(action)
            if done:
                break
        store.append_episode({k: np.stack([f[k] for f in frames]) for k in frames[0]}, task=env.task)
    state = {"state_keys": '["observation.environment_state"]', "image_keys": "[]"}
    small = {"down_dims": "[32,64]", "step_embed_dim": "16", "horizon": "8", "n_action_steps": "4"}
    train_over = {"steps": "200", "batch_size": "32", "warmup_steps": "20", "save_every": "200"}
    train(
        "diffusion",
        tmp_path / "s.zarr",
        tmp_path / "run",
        policy_overrides=state | small,
        train_overrides=train_over,
        progress=False,
    )
    cfg = EnvConfig(sim_module="test_eval_fake_env", render=False)

    def success(spec: PolicySpec) -> float:
        runs = [run_eval_episode(EvalTask("fake/reach", i, EVAL_SEED_BASE + i, spec, cfg)) for i in range(20)]
        return sum(r.success for r in runs) / len(runs)

    trained, random = (
        success(PolicySpec(checkpoint=str(tmp_path / "run"))),
        success(PolicySpec(name="random")),
    )
    # 20 held-out seeds each: measured 0.50 against 0.10 (200 steps); the margin leaves room for float differences.
    assert trained >= random + 0.25, (trained, random)


def test_the_best_checkpoint_is_the_first_with_the_highest_success(tmp_path, store_path, monkeypatch):
    import visuomotor.train as engine

    rates = {2: 0.2, 4: 0.6, 6: 0.4, 8: 0.6}  # step 4 is best; step 8 only ties it
    monkeypatch.setattr(
        engine,
        "_rollout",
        lambda ckpt, *_a: {"success_rate": rates[int(ckpt.parent.name[5:])], "ci95": [0, 1]},
    )
    out = tmp_path / "run"
    rollouts = [
        "--eval-every",
        "2",
        "--eval-episodes",
        "1",
        "-t",
        "save_every=2",
        "-t",
        "eval_env=fake/reach",
    ]
    assert main(train_args(store_path, out, 8, "--cameras", "none", *rollouts)) == 0
    assert os.readlink(out / "checkpoints" / "best") == "step-0000004"
    state = json.loads((out / "checkpoints" / "last" / "training_state" / "state.json").read_text())
    assert state["best"] == {"step": 4, "success_rate": 0.6}
    assert [(h["step"], h["success_rate"]) for h in state["history"] if "success_rate" in h] == sorted(
        rates.items()
    )
    assert load_policy(out).config.n_action_steps == 4  # eval loads the best checkpoint: it exists
