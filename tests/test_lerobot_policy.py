"""LeRobot-trained policies in our evaluator: tiny LeRobot policies are built here with LeRobot's own
classes and `save_pretrained`, then evaluated by `visuomotor eval --lerobot-checkpoint` on Metaworld's
reach-v3 (observation.state (4,), observation.environment_state (39,), action 4)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from visuomotor.cli import main

TASK = "metaworld/reach-v3"
STATE, ENV_STATE, CAMERA = "observation.state", "observation.environment_state", "observation.images.corner2"
STATE_ONLY = {STATE: ("STATE", (4,)), ENV_STATE: ("ENV", (39,))}
TINY_ACT = {
    "chunk_size": 4,
    "n_action_steps": 4,
    "dim_model": 16,
    "n_heads": 2,
    "dim_feedforward": 32,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "use_vae": False,
}
TINY_DIFFUSION = {
    "n_obs_steps": 2,
    "horizon": 8,
    "n_action_steps": 4,
    "down_dims": (8, 16),
    "kernel_size": 3,
    "n_groups": 4,
    "diffusion_step_embed_dim": 8,
    "spatial_softmax_num_keypoints": 4,
    "num_inference_steps": 2,
    "use_group_norm": True,  # a 32 px image leaves BatchNorm one value per channel at LeRobot's dry run
}


def _stats(shape: tuple[int, ...], kind: str) -> dict[str, torch.Tensor]:
    """Normalisation statistics as a LeRobot dataset has them (images per channel, (3, 1, 1))."""
    shape = (shape[0], 1, 1) if kind == "VISUAL" else shape
    g = torch.Generator().manual_seed(len(shape) + shape[0])
    mean = torch.rand(shape, generator=g) * 0.2
    return {"mean": mean, "std": torch.full(shape, 0.5), "min": mean - 1, "max": mean + 1}


def save_lerobot_policy(
    directory: Path, policy_type: str, inputs: dict, action_dim: int = 4, **fields
) -> Path:
    """A randomly initialised LeRobot policy with statistics set, saved the way LeRobot saves one."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import get_policy_class, make_policy_config, make_pre_post_processors

    features = {**inputs, "action": ("ACTION", (action_dim,))}
    config = make_policy_config(
        policy_type,
        input_features={k: PolicyFeature(FeatureType(t), s) for k, (t, s) in inputs.items()},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
        pretrained_backbone_weights=None,
        device="cpu",
        push_to_hub=False,
        **fields,
    )
    torch.manual_seed(0)
    policy = get_policy_class(policy_type)(config)
    stats = {k: _stats(s, t) for k, (t, s) in features.items()}
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    for part in (policy, preprocessor, postprocessor):
        part.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def workers_import_lerobot_meanwhile() -> None:
    """Start the rollout workers' fork server now, preloading LeRobot, so that its import (seconds on
    two busy cores) runs beside this process's own. Speed only: a fork server an earlier test started
    is reused as it is, and its workers then import LeRobot themselves."""
    import multiprocessing as mp
    from multiprocessing import forkserver

    from visuomotor.sim.workers import DEFAULT_PRELOAD

    # What WorkerPool sets before the server starts, since the server keeps the environment it began with.
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    mp.get_context("forkserver").set_forkserver_preload([*DEFAULT_PRELOAD, "lerobot.policies"])
    forkserver.ensure_running()


@pytest.fixture(scope="module")
def act_dir(tmp_path_factory, workers_import_lerobot_meanwhile) -> Path:
    return save_lerobot_policy(tmp_path_factory.mktemp("lerobot") / "act", "act", STATE_ONLY, **TINY_ACT)


def eval_args(directory: Path, *extra: str) -> list[str]:
    return ["eval", "--lerobot-checkpoint", str(directory), "--env", TASK, *extra]


def test_eval_runs_a_lerobot_checkpoint(act_dir, tmp_path):
    out = tmp_path / "eval.json"
    args = eval_args(act_dir, "--episodes", "2", "--max-steps", "5", "--workers", "1", "--json", str(out))
    assert main([*args, "--n-action-steps", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["policy"] == f"lerobot:{act_dir} (n_action_steps=2)"
    assert result["episodes"] == 2 and len(result["episode_results"]) == 2
    assert [r["seed"] for r in result["episode_results"]] == [1_000_000, 1_000_001]
    assert all(r["length"] <= 5 for r in result["episode_results"])
    assert result["mean_inference_ms"] > 0 and result["config"]["render"] is False  # state only


def copy_with(src: Path, dst: Path, name: str, change) -> Path:
    """A copy of a checkpoint with one JSON file changed by `change(data)`."""
    shutil.copytree(src, dst)
    data = json.loads((dst / name).read_text())
    change(data)
    (dst / name).write_text(json.dumps(data))
    return dst


def _feature(key: str, kind: str, shape: list[int]):
    def change(config: dict) -> None:
        group = "output_features" if key == "action" else "input_features"
        config[group][key] = {"type": kind, "shape": shape}

    return change


@pytest.mark.parametrize(
    ("key", "kind", "shape", "message"),
    [
        (STATE, "STATE", [7], r"input 'observation.state' has shape \[7\]; metaworld/reach-v3 gives \[4\]"),
        ("action", "ACTION", [7], r"output 'action' has size 7; metaworld/reach-v3 takes 4"),
        (
            "observation.images.wrist",
            "VISUAL",
            [3, 32, 32],
            r"input 'observation.images.wrist' has no counterpart",
        ),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_env_is_one_error_naming_the_key(
    act_dir, tmp_path, capsys, key, kind, shape, message
):
    bad = copy_with(act_dir, tmp_path / "bad", "config.json", _feature(key, kind, shape))
    assert main(eval_args(bad, "--episodes", "1")) == 2  # refused in the parent, before any worker
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and re.search(message, err), err


def test_robosuite_tasks_are_checked_the_same_way(act_dir, capsys):
    assert main(["eval", "--lerobot-checkpoint", str(act_dir), "--env", "robosuite/Lift"]) == 2
    assert "input 'observation.state' has shape [4]; robosuite/Lift gives [9]" in capsys.readouterr().err


def test_a_lerobot_checkpoint_made_for_robosuite_rolls_out_there(tmp_path):
    """Robosuite's Lift (9-d proprio, 10-d object state, 7-d action) through the same evaluator."""
    inputs = {STATE: ("STATE", (9,)), ENV_STATE: ("ENV", (10,))}
    lift = save_lerobot_policy(tmp_path / "lift_act", "act", inputs, action_dim=7, **TINY_ACT)
    out = tmp_path / "lift.json"
    args = ["eval", "--lerobot-checkpoint", str(lift), "--env", "robosuite/Lift", "--episodes", "1"]
    assert main([*args, "--max-steps", "6", "--workers", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["per_task"].keys() == {"robosuite/Lift"}
    assert [r["length"] for r in result["episode_results"]] == [6]  # ran its steps, failed (random weights)
    assert result["success_rate"] == 0.0


def test_lerobot_single_camera_is_the_first_rendered_one_and_other_types_are_refused(act_dir, tmp_path):
    from visuomotor.errors import InvalidInputError
    from visuomotor.eval.lerobot_checkpoint import env_observations, inspect_lerobot_checkpoint, match_inputs

    single = copy_with(
        act_dir, tmp_path / "single", "config.json", _feature("observation.image", "VISUAL", [3, 32, 32])
    )
    ckpt = inspect_lerobot_checkpoint(single)
    assert (ckpt.image_size, ckpt.cameras("corner2")) == (32, ["corner2"])
    observations = env_observations(4, 39, ["corner2", "topview"], 32)
    sources = match_inputs(ckpt, observations, 4, TASK, CAMERA)
    assert sources == {STATE: STATE, ENV_STATE: ENV_STATE, "observation.image": CAMERA}
    smolvla = copy_with(act_dir, tmp_path / "smolvla", "config.json", lambda c: c.update(type="smolvla"))
    with pytest.raises(InvalidInputError, match="type 'smolvla' is not supported; supported: act, diffusion"):
        inspect_lerobot_checkpoint(smolvla)


def test_only_inference_fields_change(act_dir, capsys):
    assert main(eval_args(act_dir, "-o", "chunk_size=2")) == 2
    assert "chunk_size cannot change" in capsys.readouterr().err
    assert main(eval_args(act_dir, "--n-action-steps", "9")) == 2
    assert "n_action_steps must be in [1, 4]" in capsys.readouterr().err
    # What only LeRobot's own config checks know is reported by the worker, as one error too.
    import gymnasium as gym

    from visuomotor.errors import InvalidInputError
    from visuomotor.eval.lerobot_policy import load_lerobot_policy

    env = SimpleNamespace(  # what the worker reads of an env: its spaces, rendered cameras and id
        observation_space=gym.spaces.Dict(
            {STATE: gym.spaces.Box(-1, 1, (4,)), ENV_STATE: gym.spaces.Box(-1, 1, (39,))}
        ),
        action_space=gym.spaces.Box(-1, 1, (4,)),
        camera_names=(),
        env_id=TASK,
    )
    with pytest.raises(InvalidInputError, match=r"temporal_ensemble_coeff=0\.01: `n_action_steps` must be 1"):
        load_lerobot_policy(str(act_dir), env, {"temporal_ensemble_coeff": "0.01"})
    assert load_lerobot_policy(str(act_dir), env, {"n_action_steps": "2"}).policy.config.n_action_steps == 2


def test_code_named_by_a_checkpoint_is_never_run(act_dir, tmp_path, capsys):
    marker = tmp_path / "ran"

    def python_class(pipeline: dict) -> None:
        pipeline["steps"][0] = {"class": "os.system", "config": {"command": f"touch {marker}"}}

    bad = copy_with(act_dir, tmp_path / "class", "policy_preprocessor.json", python_class)
    assert main(eval_args(bad, "--episodes", "1", "--max-steps", "1")) == 2
    assert "names the Python class 'os.system'" in capsys.readouterr().err and not marker.exists()

    def outside(pipeline: dict) -> None:
        pipeline["steps"][-1]["state_file"] = "../stats.safetensors"

    bad = copy_with(act_dir, tmp_path / "outside", "policy_preprocessor.json", outside)
    assert main(eval_args(bad)) == 2
    assert "is not a .safetensors file name" in capsys.readouterr().err


def test_camera_policy_sees_what_lerobots_own_pipeline_gives_it(tmp_path, capsys):
    """One camera, 32 px: our batch (uint8 HWC -> float CHW in [0, 1]) against LeRobot's own
    `preprocess_observation`, action for action on a real rendered episode."""
    from lerobot.envs.utils import preprocess_observation

    from visuomotor import sim
    from visuomotor.eval.policies import PolicySpec, build_policy
    from visuomotor.eval.rollout import obs_to_torch

    inputs = {STATE: ("STATE", (4,)), CAMERA: ("VISUAL", (3, 32, 32))}
    d = save_lerobot_policy(tmp_path / "diffusion", "diffusion", inputs, **TINY_DIFFUSION)
    assert main(eval_args(d, "--image-size", "64")) == 2
    assert "takes 32x32 images; --image-size 64" in capsys.readouterr().err
    env = sim.make_env(TASK, cameras=["corner2"], image_size=32)
    policy = build_policy(PolicySpec(lerobot=str(d)), env, sim)
    obs, _ = env.reset(seed=1_000_000)
    seen, actions = [], []
    policy.reset()
    for _ in range(3):
        torch.manual_seed(0)
        with torch.inference_mode():
            actions.append(policy.select_action(obs_to_torch(obs, env.task)))
        seen.append(obs)
        obs, *_ = env.step(actions[-1][0].numpy().astype(np.float32))
    env.close()
    # The same episode again, through LeRobot's own steps on the policy's LeRobot parts.
    policy.reset()
    for obs, action in zip(seen, actions, strict=True):
        frame = {"pixels": {"corner2": obs[CAMERA]}, "agent_pos": obs[STATE]}
        batch = {**preprocess_observation(frame), "task": [env.task]}
        torch.manual_seed(0)
        with torch.inference_mode():
            expected = policy.postprocessor(policy.policy.select_action(policy.preprocessor(batch)))
        assert action.shape == (1, 4) and torch.isfinite(action).all()
        torch.testing.assert_close(action, expected)
