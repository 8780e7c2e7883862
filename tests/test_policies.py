"""Contract test over every registered policy and preset, plus checkpoint and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, make_store

from visuomotor.datasets import SequenceSampler
from visuomotor.datasets.stats import compute_stats
from visuomotor.policies import REGISTRY, get_policy_entry, load_policy, make_config

# Every preset of every policy, with and without a camera; the paper presets (GPU-sized networks) only
# with a camera, which exercises their whole network, to keep the suite fast on a CPU (state-only
# presets such as CARP's paper_state without one). Policies that need cameras (PAD) only with one; PAD's
# paper network (677M parameters) is checked for its sizes in test_pad.py instead.
CASES = [
    (name, preset, cameras)
    for name, entry in REGISTRY.items()
    for preset in entry.load()[2]
    for cameras in ((False, True) if preset == "cpu" else (False,) if "state" in preset else (True,))
    if (cameras or not entry.needs_cameras) and (name, preset) != ("pad", "paper")
]
STATE_POLICIES = sorted(name for name, entry in REGISTRY.items() if not entry.needs_cameras)
"""Policies that run from low-dim state alone: the generic tests below use state-only fixtures."""
CHUNKING_POLICIES = [n for n in STATE_POLICIES if make_config(n, "cpu").horizon == 16]
"""The state policies whose cpu preset predicts chunks of 16 (To 2): EXPO acts one action at a time."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s.zarr"
    store, _ = make_store(
        path, episodes=3, lengths=[20, 24, 18], image_hw=16, tasks=["reach", "push", "reach"]
    )
    compute_stats(store)
    return store


def build(name: str, preset: str, store, cameras: bool, **overrides):
    image_keys = (IMAGE_KEY,) if cameras else ()
    keys = ["observation.state", *image_keys]
    config = make_config(
        name,
        preset,
        image_keys=image_keys,
        input_shapes={k: list(store.shape(k)) for k in keys},
        action_dim=store.shape("action")[0],
        tasks=store.tasks,
        **overrides,
    )
    policy_cls = get_policy_entry(name).load()[0]
    stats = {k: store.attrs["stats"][k] for k in [*keys, "action"]}
    return policy_cls(config, stats)


def batch_for(policy, store, size: int = 4):
    sample = SequenceSampler(store, policy.config.window_spec()).sample(np.arange(size))
    return {k: torch.from_numpy(v) for k, v in sample.items()}


def obs_window(batch, policy, i: int = 0):
    keys = policy.config.input_keys
    To = policy.config.n_obs_steps
    obs = {k: batch[k][i : i + 1, :To] for k in keys}
    obs["task"] = [policy.config.tasks[int(batch["task_index"][i])]]
    return obs


def record_chunk_predictions(policy) -> list:
    """Wrap `policy.predict_action_chunk` to record the observation-state shape of every call."""
    calls = []
    original = policy.predict_action_chunk

    def recording(obs, **kw):
        calls.append(obs["observation.state"].shape)
        return original(obs, **kw)

    policy.predict_action_chunk = recording
    return calls


@pytest.mark.parametrize(
    ("name", "preset", "cameras"), CASES, ids=[f"{n}-{p}-{'image' if c else 'state'}" for n, p, c in CASES]
)
def test_policy_contract(tmp_path, store, name, preset, cameras):
    torch.manual_seed(0)
    # The paper networks at full width on 16 px inputs; only the number of denoising passes (an inference
    # field: the same weights, the same sampler code) is cut, which is what made this test take minutes.
    fast = {"num_inference_steps": 2} if name == "diffusion" and preset == "paper" else {}
    policy = build(name, preset, store, cameras, **fast)
    batch = batch_for(policy, store, size=2)
    for stage in policy.training_stages(10**6):  # every stage trains the parameters it names
        policy.zero_grad(set_to_none=True)
        policy.set_stage(stage.name)
        loss, logs = policy.compute_loss(batch)
        assert loss.ndim == 0 and torch.isfinite(loss), stage.name
        assert isinstance(logs, dict) and all(isinstance(v, float) for v in logs.values())
        loss.backward()
        modules = [policy.get_submodule(m) for m in stage.modules] or [policy]
        grads = [p.grad for m in modules for p in m.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), stage.name
        assert any(g.abs().sum() > 0 for g in grads), stage.name

    policy.eval()
    obs = obs_window(batch, policy)
    chunk = policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(1))
    assert chunk.shape == (1, policy.config.horizon, policy.config.action_dim)
    assert torch.isfinite(chunk).all()

    policy.reset()
    step_obs = {k: v[:, -1] for k, v in obs.items() if k != "task"} | {"task": obs["task"]}
    actions = [policy.select_action(step_obs) for _ in range(policy.config.n_action_steps + 1)]
    assert all(a.shape == (1, policy.config.action_dim) for a in actions)

    policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_policy(tmp_path / "ckpt")
    assert type(loaded) is type(policy)
    again = loaded.predict_action_chunk(obs, generator=torch.Generator().manual_seed(1))
    assert torch.equal(chunk, again)


def test_select_action_executes_a_chunk_then_replans(store):
    policy = build("diffusion", "cpu", store, cameras=False).eval()
    calls = record_chunk_predictions(policy)
    obs = {"observation.state": torch.rand(1, 4), "task": ["reach"]}
    for _ in range(policy.config.n_action_steps * 2 + 1):
        policy.select_action(obs)
    assert len(calls) == 3  # a new chunk every n_action_steps actions
    assert calls[0] == (1, policy.config.n_obs_steps, 4)  # observation history stacked on axis 1
    policy.reset()
    policy.select_action(obs)
    assert len(calls) == 4


@pytest.mark.parametrize("m", [0.0, 0.5])
def test_temporal_ensembling_averages_what_the_last_chunks_predicted_for_this_step(tmp_path, store, m):
    build("carp", "cpu", store, cameras=False).save_pretrained(tmp_path / "c")
    policy = load_policy(tmp_path / "c", overrides={"temporal_ensemble": str(m), "n_action_steps": "3"})
    chunks = [torch.randn(1, policy.config.horizon, policy.config.action_dim) for _ in range(6)]
    made = iter(chunks)
    policy.predict_action_chunk = lambda obs, **kw: next(made)  # chunk t is predicted at step t
    obs = {"observation.state": torch.rand(1, 4), "task": ["reach"]}
    policy.reset()
    start = policy.config.n_obs_steps - 1  # a chunk's action for the step it was made at
    for t in range(5):
        action = policy.select_action(obs)
        # chunks made at steps t-2 .. t still reach step t (Ta = 3); the oldest weighs exp(0) = 1
        made_at = list(range(max(0, t - 2), t + 1))
        w = torch.exp(-m * torch.arange(len(made_at), dtype=torch.float32))
        offers = torch.stack([chunks[s][0, start + t - s] for s in made_at])
        torch.testing.assert_close(action[0], (w[:, None] * offers).sum(0) / w.sum())
    policy.reset()  # a new episode forgets the old chunks
    torch.testing.assert_close(policy.select_action(obs)[0], chunks[5][0, start])
    with pytest.raises(ValueError, match="temporal_ensemble must be a finite number"):
        load_policy(tmp_path / "c", overrides={"temporal_ensemble": "nan"})


@pytest.mark.parametrize("name", CHUNKING_POLICIES)
def test_evaluation_can_execute_fewer_or_more_actions_per_chunk(tmp_path, store, name):
    from visuomotor.eval.policies import PolicySpec, build_policy
    from visuomotor.policies import inspect_checkpoint

    build(name, "cpu", store, cameras=False).save_pretrained(tmp_path / "c")
    spec = PolicySpec(checkpoint=str(tmp_path / "c"), overrides=(("n_action_steps", "3"),))
    assert "n_action_steps=3" in spec.label
    inspect_checkpoint(spec.checkpoint, {"n_action_steps": "3"}, "--n-action-steps")
    policy = build_policy(spec, env=None, sim=None)
    calls = record_chunk_predictions(policy)
    policy.reset()
    obs = {"observation.state": torch.rand(1, 4), "task": ["reach"]}
    for _ in range(7):
        policy.select_action(obs)
    assert len(calls) == 3  # steps 0, 3 and 6 start a chunk (the checkpoint's own Ta is 8)
    # horizon 16, To 2: at most 15 actions of a chunk lie at or after the current step.
    with pytest.raises(ValueError, match=r"--n-action-steps for .*c: n_action_steps must be in \[1, .*15\]"):
        inspect_checkpoint(spec.checkpoint, {"n_action_steps": "16"}, "--n-action-steps")
    with pytest.raises(ValueError, match="reference policy"):
        PolicySpec(name="scripted", overrides=(("n_action_steps", "3"),))


@pytest.mark.parametrize("name", ["diffusion", "pad"])
def test_timestep_spacing_sets_the_noise_level_sampling_starts_from(store, name):
    """leading: DDIM-10 of 100 levels starts at t = 90 (diffusers' default); trailing: at t = 99, the level
    the pure noise it starts from belongs to. PAD's frames and actions share the steps."""
    cameras = name == "pad"
    leading = build(name, "cpu", store, cameras, timestep_spacing="leading")
    trailing = build(name, "cpu", store, cameras, timestep_spacing="trailing")
    T, n = leading.config.num_train_timesteps, leading.config.num_inference_steps
    for policy, first in ((leading, T - T // n), (trailing, T - 1)):
        schedulers = [policy.infer_scheduler, *([policy.image_scheduler] if cameras else [])]
        for scheduler in schedulers:
            scheduler.set_timesteps(n)
            assert scheduler.timesteps[0] == first and len(scheduler.timesteps) == n
    with pytest.raises(ValueError, match="timestep_spacing must be one of leading, trailing, got 'middle'"):
        build(name, "cpu", store, cameras, timestep_spacing="middle")
    # PAD's presets sample with trailing; a config that does not name it (a checkpoint saved before the
    # field existed) keeps the leading steps it was measured with.
    config_cls, presets = get_policy_entry(name).load()[1:]
    expected = {"pad": "trailing", "diffusion": None}[name]
    assert {presets[p].get("timestep_spacing") for p in ("cpu", "paper")} == {expected}
    assert config_cls.timestep_spacing == "leading"


INFERENCE_CHANGES = {
    "diffusion": {"sampler": "ddpm", "num_inference_steps": "20", "timestep_spacing": "trailing"},
    "carp": {"top_k": "5"},
    "expo": {"sampler": "ddim"},
}


@pytest.mark.parametrize("name", STATE_POLICIES)
def test_checkpoint_runs_with_inference_fields_changed_and_refuses_other_fields(tmp_path, store, name):
    from visuomotor.eval.policies import PolicySpec, build_policy
    from visuomotor.policies import inspect_checkpoint

    build(name, "cpu", store, cameras=False).save_pretrained(tmp_path / "c")
    changes = INFERENCE_CHANGES[name]
    spec = PolicySpec(checkpoint=str(tmp_path / "c"), overrides=tuple(changes.items()))
    inspect_checkpoint(spec.checkpoint, changes)
    changed, plain = build_policy(spec, env=None, sim=None), load_policy(tmp_path / "c")
    for field, value in changes.items():
        assert str(getattr(changed.config, field)).lower() == value
    assert all(f in changed.config.INFERENCE_FIELDS for f in changes)
    obs = {"observation.state": torch.rand(1, 2, 4), "task": ["reach"]}
    a = changed.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    b = plain.predict_action_chunk(obs, generator=torch.Generator().manual_seed(0))
    assert a.shape == b.shape and not torch.allclose(a, b)  # the change reaches inference
    for field, value in changes.items():
        assert field in spec.label and value in spec.label
    with pytest.raises(ValueError, match=r"horizon cannot change after training .* can run with other"):
        inspect_checkpoint(spec.checkpoint, {"horizon": "8"})
    with pytest.raises(ValueError, match="horizon cannot change after training"):
        load_policy(tmp_path / "c", overrides={"horizon": "8"})
    with pytest.raises(ValueError, match=r"-o for .*c: .*n_action_steps must be in"):
        inspect_checkpoint(spec.checkpoint, {"n_action_steps": "99"})
    with pytest.raises(ValueError, match="reference policy"):
        PolicySpec(name="scripted", overrides=(("top_k", "2"),))


def test_normaliser_travels_in_the_checkpoint(tmp_path, store):
    policy = build("diffusion", "cpu", store, cameras=True)
    policy.save_pretrained(tmp_path / "c")
    loaded = load_policy(tmp_path / "c")
    for key in policy.normalizer.modes:
        assert torch.equal(policy.normalizer.scale(key), loaded.normalizer.scale(key))
        assert torch.equal(policy.normalizer.offset(key), loaded.normalizer.offset(key))
    assert not torch.equal(
        loaded.normalizer.scale("action"), torch.ones_like(loaded.normalizer.scale("action"))
    )


def test_checkpoint_of_another_policy_is_refused(tmp_path, store):
    policy = build("diffusion", "cpu", store, cameras=False)
    policy.save_pretrained(tmp_path / "dp")
    carp = get_policy_entry("carp").load()[0]
    with pytest.raises(ValueError, match="holds a 'diffusion' policy, not 'carp'"):
        carp.from_pretrained(tmp_path / "dp")
    meta = json.loads((tmp_path / "dp" / "config.json").read_text())
    meta["policy"] = "no-such-policy"
    (tmp_path / "dp" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown policy 'no-such-policy'"):
        load_policy(tmp_path / "dp")


def test_checkpoint_with_mismatched_config_names_the_problem(tmp_path, store):
    policy = build("diffusion", "cpu", store, cameras=False)
    policy.save_pretrained(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    meta["config"]["down_dims"] = [16, 32, 64]
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the config"):
        load_policy(tmp_path / "c")
    meta["config"]["no_such_field"] = 1
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no_such_field"):
        load_policy(tmp_path / "c")


def test_missing_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_policy(tmp_path / "empty")


def test_damaged_weights_file_is_named(tmp_path, store):
    build("diffusion", "cpu", store, cameras=False).save_pretrained(tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5])  # truncated, as by a full disk
    with pytest.raises(ValueError, match=r"model.safetensors: checksum mismatch .* damaged or was replaced"):
        load_policy(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    del meta["weights_sha256"]  # a checkpoint from before the checksum was recorded
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
        load_policy(tmp_path / "c")


def test_weights_replaced_by_others_of_the_same_shape_are_detected(tmp_path, store):
    build("diffusion", "cpu", store, cameras=False).save_pretrained(tmp_path / "a")
    build("diffusion", "cpu", store, cameras=False).save_pretrained(tmp_path / "b")
    load_policy(tmp_path / "a")  # intact: loads
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_policy(tmp_path / "a")


def test_unknown_task_missing_observation_key_and_wrong_shape(store):
    policy = build("diffusion", "cpu", store, cameras=True).eval()
    obs = {"observation.state": torch.rand(1, 4), IMAGE_KEY: torch.zeros(1, 16, 16, 3, dtype=torch.uint8)}
    with pytest.raises(ValueError, match="unknown task 'fly'"):
        policy.select_action(obs | {"task": ["fly"]})
    policy.reset()
    with pytest.raises(KeyError, match=IMAGE_KEY):
        policy.select_action({"observation.state": torch.rand(1, 4), "task": ["reach"]})
    policy.reset()
    with pytest.raises(
        ValueError,
        match=r"'observation.state' has shape \[1, 2, 3\]; this policy expects frames of shape \[4\]",
    ):
        policy.select_action(obs | {"observation.state": torch.rand(1, 3), "task": ["reach"]})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_action_steps", 20, "n_action_steps"),
        ("sampler", "euler", "sampler"),
        ("horizon", 10, "divisible"),
        ("image_keys", ("front",), "observation.images"),
        ("state_noise", -0.1, "state_noise"),
        ("shift_pad", -1, "shift_pad"),
        ("mixup", 1.5, "mixup"),
        ("mixup", -0.1, "mixup"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        make_config("diffusion", "cpu", **{field: value})


def test_mixup_refuses_a_policy_with_cameras():
    with pytest.raises(ValueError, match=r"mixup mixes low-dim states.*observation.images.front"):
        make_config("diffusion", "cpu", image_keys=("observation.images.front",), mixup=0.5)


def test_nearest_other_demonstrations_stay_in_the_task_and_leave_the_episode():
    from visuomotor.policies.common.mixup import nearest_other_demonstrations

    # Row 2 is nearest to row 0 but of task 1; row 3 is of task 0 but of row 0's own episode.
    state = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.05, 0.0], [0.01, 0.0], [0.3, 0.0], [0.2, 0.0]])
    episode = torch.tensor([0, 1, 2, 0, 1, 3])
    task = torch.tensor([0, 0, 1, 0, 0, 0])
    nearest = [5, 5, -1, 5, 5, 4]  # row 2's task has no other demonstration
    for block in (4096, 2):  # queries in blocks give the same answer
        got = nearest_other_demonstrations(state, episode, task, block=block)
        assert got.shape == (6, 1)
        assert got[:, 0].tolist() == nearest
    # k nearest, nearest first; -1 where the task has fewer windows of other demonstrations.
    got = nearest_other_demonstrations(state, episode, task, k=4, block=2).tolist()
    assert got[0] == [5, 4, 1, -1]  # rows 0 and 3 are its own episode
    assert got[1] == [5, 3, 0, -1]  # row 4 is its own episode
    assert got[2] == [-1, -1, -1, -1]
    assert got[5] == [4, 3, 0, 1]
    assert nearest_other_demonstrations(state, episode, task, k=9).shape == (6, 9)  # more than the rows


@pytest.mark.parametrize("name", STATE_POLICIES)
def test_mixup_mixes_nearest_windows_of_other_demonstrations_of_the_same_task(name):
    config = make_config(name, "cpu", input_shapes={"observation.state": [2]}, action_dim=1, mixup=0.5)
    policy = REGISTRY[name].load()[0](config).train()
    # Windows 0 and 1: task 0, episodes 0 and 1. Window 2 is nearest to window 0 but of task 1, window 3
    # of task 0 but of episode 0 again (window 0's own demonstration).
    now = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.05, 0.0], [0.01, 0.0]])
    batch = {
        "observation.state": now.view(4, 1, 2).repeat(1, config.n_obs_steps, 1),
        "action": torch.tensor([0.0, 1.0, -7.0, 9.0]).view(4, 1, 1).repeat(1, config.horizon, 1),
        "episode_index": torch.tensor([0, 1, 2, 0]),
        "task_index": torch.tensor([0, 0, 1, 0]),
    }
    torch.manual_seed(0)
    mixed = policy.mix_demonstrations(batch)
    lam = mixed["action"][0, 0, 0].item()  # window 0's partner is window 1, whose action is 1
    assert 0 < lam <= 0.5
    expected = (1 - lam) * batch["observation.state"][0] + lam * batch["observation.state"][1]
    torch.testing.assert_close(mixed["observation.state"][0], expected)
    assert torch.equal(mixed["action"][2], batch["action"][2])  # no other demonstration of task 1
    assert 1.0 < mixed["action"][1, 0, 0].item() <= 5.0  # window 1's nearest other-episode window: 3
    assert 5.0 <= mixed["action"][3, 0, 0].item() < 9.0  # window 3's: 1 (window 0 is its own episode)
    assert torch.equal(batch["observation.state"][0, 0], now[0])  # the caller's batch is left as it was
    assert policy.eval().mix_demonstrations(batch) is batch  # never at inference


def test_mixup_searches_partners_in_normalised_state():
    config = make_config("diffusion", "cpu", input_shapes={"observation.state": [2]}, action_dim=1, mixup=0.5)
    # Dimension 1 spans 100x the range of dimension 0: raw distances would pick window 1 for window 0.
    stats = {
        "observation.state": {
            "min": [0.0, 0.0],
            "max": [1.0, 100.0],
            "mean": [0.5, 50.0],
            "std": [0.3, 30.0],
        },
        "action": {"min": [-1.0], "max": [1.0], "mean": [0.0], "std": [0.5]},
    }
    policy = REGISTRY["diffusion"].load()[0](config, stats).train()
    now = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 5.0]])
    batch = {
        "observation.state": now.view(3, 1, 2).repeat(1, config.n_obs_steps, 1),
        "action": torch.tensor([0.0, 1.0, -1.0]).view(3, 1, 1).repeat(1, config.horizon, 1),
        "episode_index": torch.tensor([0, 1, 2]),
        "task_index": torch.tensor([0, 0, 0]),
    }
    torch.manual_seed(0)
    mixed = policy.mix_demonstrations(batch)
    assert -0.5 <= mixed["action"][0, 0, 0].item() < 0.0  # window 0's partner is window 2 (action -1)


def test_state_noise_perturbs_the_state_only_while_training():
    from visuomotor.policies.common.encoders import ObsEncoder

    config = make_config("diffusion", "cpu", input_shapes={"observation.state": [4]}, action_dim=2)
    config.state_noise = 0.1
    encoder = ObsEncoder(config)
    obs = {"observation.state": torch.zeros(4096, config.n_obs_steps, 4)}
    encoder.eval()
    assert torch.equal(encoder(obs), torch.zeros(4096, 4 * config.n_obs_steps))
    encoder.train()
    noisy = encoder(obs)
    assert noisy.std().item() == pytest.approx(0.1, rel=0.05)
    assert noisy.mean().abs().item() < 0.01
    config.state_noise = 0.0
    assert torch.equal(encoder(obs), torch.zeros_like(noisy))


@pytest.mark.parametrize("name", STATE_POLICIES)
def test_state_differences_are_normalised_inputs_that_travel_in_the_checkpoint(tmp_path, store, name):
    from visuomotor.policies.common.differences import DIFFERENCES_KEY

    torch.manual_seed(0)
    plain = build(name, "cpu", store, cameras=False)
    policy = build(name, "cpu", store, cameras=False, state_differences=((2, 0, 2), (3, 1, 1)))
    assert policy.encoder.out_dim == plain.encoder.out_dim + 3 * policy.config.n_obs_steps
    batch = batch_for(policy, store)
    To = policy.config.n_obs_steps
    state = batch["observation.state"][:, :To]
    raw = torch.cat([state[..., 2:4] - state[..., 0:2], state[..., 3:4] - state[..., 1:2]], dim=-1)
    assert policy.normalizer.offset(DIFFERENCES_KEY).shape == (3,)
    prepared = policy.prepare_obs({"observation.state": state})
    expected = policy.normalizer.normalize_key(DIFFERENCES_KEY, raw)
    assert torch.allclose(prepared[DIFFERENCES_KEY], expected)
    assert prepared[DIFFERENCES_KEY].abs().max() <= 1.0 + 1e-5  # min-max bounds hold for the store's data
    loss, _ = policy.compute_loss(batch)
    assert torch.isfinite(loss)

    policy.eval()
    obs = obs_window(batch, policy)
    chunk = policy.predict_action_chunk(obs, generator=torch.Generator().manual_seed(1))
    policy.save_pretrained(tmp_path / "c")
    loaded = load_policy(tmp_path / "c")
    assert loaded.config.state_differences == ((2, 0, 2), (3, 1, 1))
    assert torch.equal(chunk, loaded.predict_action_chunk(obs, generator=torch.Generator().manual_seed(1)))
    # The encoder reads the differences: changing only them changes the conditioning.
    prepared = loaded.prepare_obs({"observation.state": obs["observation.state"]})
    task = loaded.task_indices(obs, 1)
    moved = prepared | {DIFFERENCES_KEY: prepared[DIFFERENCES_KEY] + 0.5}
    assert not torch.equal(loaded.encoder(prepared, task), loaded.encoder(moved, task))


def test_state_dims_select_what_the_encoder_sees(store):
    from visuomotor.policies.common.differences import DIFFERENCES_KEY

    policy = build("diffusion", "cpu", store, cameras=False, state_dims=(3,), state_differences=((2, 0, 1),))
    To = policy.config.n_obs_steps
    assert policy.encoder.out_dim == (1 + 1) * To + policy.config.task_embed_dim
    state = torch.rand(1, To, 4)
    prepared = policy.prepare_obs({"observation.state": state})
    cond = policy.encoder.eval()(prepared, torch.tensor([0]))
    per_step = cond[0, : 2 * To].reshape(To, 2)  # kept dim, then the difference, for each frame
    assert torch.allclose(per_step[:, 0], prepared["observation.state"][0, :, 3])
    assert torch.allclose(per_step[:, 1], prepared[DIFFERENCES_KEY][0, :, 0])
    moved = state.clone()
    moved[..., 1] += 0.3  # a dimension neither kept nor in a difference
    assert torch.equal(
        cond, policy.encoder(policy.prepare_obs({"observation.state": moved}), torch.tensor([0]))
    )
    with pytest.raises(ValueError, match=r"state_dims \[4\] lie outside the 4-d state"):
        build("diffusion", "cpu", store, cameras=False, state_dims=(0, 4))


def test_difference_statistics_bound_the_differences():
    from visuomotor.policies.common.differences import difference_stats, state_differences

    rng = np.random.default_rng(0)
    state = rng.normal(size=(500, 2, 3)) * np.array([1.0, 5.0, 0.1])
    stats = {
        "a": {
            "min": state[:, 0].min(0),
            "max": state[:, 0].max(0),
            "mean": state[:, 0].mean(0),
            "std": state[:, 0].std(0),
        },
        "b": {
            "min": state[:, 1].min(0),
            "max": state[:, 1].max(0),
            "mean": state[:, 1].mean(0),
            "std": state[:, 1].std(0),
        },
    }
    triples = ((3, 0, 3), (1, 5, 1))  # b - a per axis; a[1] - b[2]
    d = difference_stats(stats, ("a", "b"), triples)
    diffs = state_differences(torch.from_numpy(state.reshape(500, 6)), triples).numpy()
    assert np.all(diffs >= np.array(d["min"]) - 1e-12) and np.all(diffs <= np.array(d["max"]) + 1e-12)
    np.testing.assert_allclose(d["mean"], diffs.mean(0), atol=1e-9)
    np.testing.assert_allclose(d["std"], diffs.std(0), rtol=0.2)  # independent parts: stds add in squares
    assert d["min"][3] == pytest.approx(state[:, 0, 1].min() - state[:, 1, 2].max())


def test_state_differences_outside_the_state_are_refused(store):
    with pytest.raises(
        ValueError,
        match=r"state_differences .*\(2, 0, 3\).* reach past the 4-d state of \['observation.state'\]",
    ):
        build("diffusion", "cpu", store, cameras=False, state_differences=((2, 0, 3),))
    with pytest.raises(ValueError, match="triples"):
        make_config("diffusion", "cpu", state_differences=((1, 0),))


def test_unknown_policy_and_preset():
    with pytest.raises(ValueError, match="registered policies"):
        make_config("nope")
    with pytest.raises(ValueError, match="presets"):
        make_config("diffusion", "gpu")


def test_push_to_hub_uploads_the_checkpoint_layout(store, monkeypatch):
    """The Hub mixin's push_to_hub uploads exactly what save_pretrained writes (upload intercepted:
    no network here)."""
    import huggingface_hub.hub_mixin as hub_mixin

    uploaded: dict[str, object] = {}

    def fake_upload(self, **kwargs):
        folder = kwargs["folder_path"]
        uploaded["files"] = sorted(p.name for p in Path(folder).iterdir())
        uploaded["config"] = json.loads((Path(folder) / "config.json").read_text())
        return "url"

    monkeypatch.setattr(
        hub_mixin.HfApi, "create_repo", lambda self, **kw: type("R", (), {"repo_id": "me/p"})()
    )
    monkeypatch.setattr(hub_mixin.HfApi, "upload_folder", fake_upload)
    policy = build("diffusion", "cpu", store, cameras=False)
    policy.push_to_hub("me/p")
    assert uploaded["files"] == ["config.json", "model.safetensors"]
    assert uploaded["config"]["policy"] == "diffusion"


LEARN = {  # small enough to learn the fixture's 3 demonstrations in a few hundred steps
    "diffusion": {"down_dims": (32, 64), "step_embed_dim": 16, "horizon": 8, "n_action_steps": 4},
    "carp": {"horizon": 8, "n_action_steps": 4, "scales": (1, 2), "codebook_size": 16, "width": 32, "depth": 2,
             "heads": 2, "tokenizer_steps": 150},
    # pixels: the fixture's frames are noise, which an autoencoder stage could not learn to compress
    "pad": {"hidden_dim": 64, "depth": 2, "num_heads": 2, "horizon": 8, "n_action_steps": 4, "future_offsets": (4, 8),
            "shift_pad": 0, "autoencoder_steps": 0, "patch_size": 8},
    "expo": {"hidden_dim": 64, "num_blocks": 1, "block_expansion": 2, "time_dim": 16, "action_norm": "min_max"},
}  # fmt: skip
LEARN_STEPS = {"diffusion": 200, "carp": 350, "pad": 300, "expo": 300}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_policy_learns_its_training_actions(store, name):
    """Each stage's loss (its action loss, for PAD, whose frame loss on the fixture's noise images cannot
    fall as far) falls far below where it started, and the trained policy's sampled chunks come close to
    the demonstrated ones (error a fraction of the actions' spread)."""
    torch.manual_seed(0)
    policy = build(name, "cpu", store, cameras=REGISTRY[name].needs_cameras, **LEARN[name])
    policy.prepare_training()
    policy.train()
    sampler = SequenceSampler(store, policy.config.window_spec())
    rng = np.random.default_rng(0)
    for stage in policy.training_stages(LEARN_STEPS[name]):
        policy.set_stage(stage.name)
        params = [p for m in stage.modules for p in policy.get_submodule(m).parameters()] or list(
            policy.parameters()
        )
        opt = torch.optim.AdamW(params, lr=3e-3 if name == "diffusion" else 1e-3)
        losses = []
        for _ in range(stage.steps):
            batch = {
                k: torch.from_numpy(v) for k, v in sampler.sample(rng.integers(0, len(sampler), 32)).items()
            }
            loss, logs = policy.compute_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(logs.get("action_loss", loss.item()))
        first, last = np.mean(losses[:10]), np.mean(losses[-20:])
        assert last < 0.4 * first, f"{name} stage {stage.name}: loss {first:.3f} -> {last:.3f}"
    policy.eval()
    windows = {k: torch.from_numpy(v) for k, v in sampler.sample(np.arange(len(sampler))).items()}
    with torch.no_grad():
        chunks = policy.predict_action_chunk(windows)
    actions = windows["action"]
    rmse = (chunks - actions).pow(2).mean().sqrt()
    assert rmse < 0.3 * actions.std(), (
        f"{name}: action RMSE {float(rmse):.2f}, spread {float(actions.std()):.2f}"
    )
