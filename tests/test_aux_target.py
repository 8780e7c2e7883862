"""The auxiliary target (`aux_target_key`): a low-dim key the camera features learn to predict while
training, which the policy never reads as an input: training windows carry it, acting does not need it,
the loss trains the camera encoder, and bad settings are named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, episode_arrays

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets.sampler import SequenceSampler
from visuomotor.datasets.stats import compute_stats
from visuomotor.policies import get_policy_entry, load_policy, make_config

TARGET = "observation.environment_state"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Episodes whose privileged state is what the camera shows: each channel's mean brightness."""
    store = EpisodeStore.create(tmp_path_factory.mktemp("aux") / "s.zarr", fps=10)
    for e, n in enumerate([20, 24, 18]):
        data = episode_arrays(n, episode=e, image_hw=16)
        data[TARGET] = data[IMAGE_KEY].mean(axis=(1, 2)).astype(np.float32)  # (n, 3)
        store.append_episode(data, task=["reach", "push"][e % 2])
    compute_stats(store)
    return store


def build(name, store, **overrides):
    keys = ["observation.state", IMAGE_KEY, TARGET]
    config = make_config(
        name,
        "cpu",
        image_keys=(IMAGE_KEY,),
        input_shapes={k: list(store.shape(k)) for k in keys},
        action_dim=store.shape("action")[0],
        tasks=store.tasks,
        aux_target_key=TARGET,
        **overrides,
    )
    stats = {k: store.attrs["stats"][k] for k in [*keys, "action"]}
    return get_policy_entry(name).load()[0](config, stats)


def batch(policy, store, size=8):
    sample = SequenceSampler(store, policy.config.window_spec()).sample(np.arange(size))
    return {k: torch.from_numpy(v) for k, v in sample.items()}


@pytest.mark.parametrize("name", ["diffusion", "carp"])
def test_the_auxiliary_loss_trains_the_camera_encoder_to_predict_the_target(store, name):
    torch.manual_seed(0)
    policy = build(name, store).train()
    data = batch(policy, store)
    assert TARGET in data and TARGET not in policy.config.input_keys
    _, aux = policy.condition_for_training(data)
    aux.backward()
    camera = next(iter(policy.encoder.cameras.values()))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in camera.parameters() if p.ndim > 1)
    loss, logs = policy.compute_loss(data)
    assert logs["aux_loss"] > 0 and logs["loss"] == pytest.approx(loss.item())
    # It learns: fitted on one batch, the prediction of the target improves several-fold.
    opt = torch.optim.Adam(policy.encoder.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        opt.zero_grad()
        _, aux = policy.condition_for_training(data)
        first = aux.item() if first is None else first
        aux.backward()
        opt.step()
    assert aux.item() < first / 4


def test_training_carries_the_target_and_the_checkpoint_acts_without_it(store, tmp_path):
    from visuomotor.train import describe_inputs, train

    over = {"image_keys": f'["{IMAGE_KEY}"]', "aux_target_key": TARGET, "aux_loss_weight": "0.5"}
    fast = {"steps": "2", "batch_size": "4", "warmup_steps": "1"}
    train(
        "diffusion", store.path, tmp_path / "run", policy_overrides=over, train_overrides=fast, progress=False
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert any("aux_loss" in m for m in metrics)
    policy = load_policy(tmp_path / "run").eval()
    assert "auxiliary target observation.environment_state (training only)" in describe_inputs(policy.config)
    obs = {k: torch.from_numpy(store.episode(0)[k][None, :2]) for k in policy.config.input_keys}
    chunk = policy.predict_action_chunk(obs | {"task": ["reach"]}, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (1, 16, 2)  # no environment state in the observation, none needed


def test_bad_auxiliary_targets_are_named(store, tmp_path):
    from visuomotor.train import train

    with pytest.raises(ValueError, match="predicted from camera features; this policy has no cameras"):
        make_config("diffusion", "cpu", aux_target_key=TARGET)
    with pytest.raises(ValueError, match="is also an input of this policy"):
        make_config("diffusion", "cpu", image_keys=(IMAGE_KEY,), aux_target_key="observation.state")
    with pytest.raises(ValueError, match="a PadConfig has no auxiliary target"):
        make_config("pad", "cpu", image_keys=(IMAGE_KEY,), aux_target_key=TARGET)
    plain = EpisodeStore.create(tmp_path / "plain.zarr", fps=10)
    plain.append_episode(episode_arrays(20, image_hw=16), task="reach")
    compute_stats(plain)
    over = {"image_keys": f'["{IMAGE_KEY}"]', "aux_target_key": TARGET}
    with pytest.raises(ValueError, match=f"the policy needs '{TARGET}' but the store has only"):
        train("diffusion", plain.path, tmp_path / "run", policy_overrides=over, progress=False)
