"""Damaged metadata meets a named error, never a raw traceback or a quietly different store or policy
(the cases `visuomotor bench fuzz` found: architecture.md §Store, §Training runs and checkpoints)."""

from __future__ import annotations

import json

import pytest
from fixtures import make_store

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets.store import StoreError
from visuomotor.policies import get_policy_entry, inspect_checkpoint, load_policy, make_config


@pytest.fixture
def store_path(tmp_path):
    make_store(tmp_path / "s.zarr", episodes=2)
    return tmp_path / "s.zarr"


def test_an_array_that_lost_its_metadata_is_named_not_dropped(store_path):
    (store_path / "data" / "action" / "zarr.json").unlink()
    with pytest.raises(StoreError, match=r"array 'data/action' has lost its metadata"):
        EpisodeStore.open(store_path)


def test_an_array_whose_creation_was_killed_mid_write_is_no_damage(store_path):
    """zarr writes zarr.json through a temporary `zarr.<hex>.partial`; a writer killed then leaves only
    that file in a new array's folder (a real SIGKILL did, test_crash_safety): the array never existed."""
    folder = store_path / "data" / "observation.images.cam"
    folder.mkdir()
    (folder / "zarr.33804a965f1445959fa480a3a7d7dd79.partial").write_bytes(b"")
    assert EpisodeStore.open(store_path).num_episodes == 2
    (folder / "c").mkdir()
    (folder / "c" / "0").write_bytes(b"chunk")
    with pytest.raises(StoreError, match=r"array 'data/observation.images.cam' has lost its metadata"):
        EpisodeStore.open(store_path)


@pytest.mark.parametrize("damage", [b"\xff\xfe garbage", b'{"zarr_format": 3, "node_type": "array"}', b""])
def test_garbled_array_metadata_is_a_store_error(store_path, damage):
    (store_path / "data" / "observation.state" / "zarr.json").write_bytes(damage)
    with pytest.raises(StoreError, match=r"damaged metadata|cannot open"):
        EpisodeStore.open(store_path)


@pytest.fixture
def checkpoint(tmp_path):
    config = make_config("diffusion", "cpu", input_shapes={"observation.state": [4]}, action_dim=2,
                         down_dims=(16, 32), horizon=8, n_action_steps=4)  # fmt: skip
    get_policy_entry("diffusion").load()[0](config).save_pretrained(tmp_path / "c")
    return tmp_path / "c"


def edit_config(path, **fields):
    meta = json.loads((path / "config.json").read_text())
    meta["config"].update(fields)
    (path / "config.json").write_text(json.dumps(meta))


def test_a_config_json_that_is_not_text_is_named(checkpoint):
    (checkpoint / "config.json").write_bytes(b'{"policy": "\xff\xfe"}')
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
        inspect_checkpoint(checkpoint)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"horizon": [8]}, r"config\.horizon: expected int, got \[8\]"),
        ({"crop_ratio": "0.9"}, r"config\.crop_ratio: expected float"),
        ({"clip_sample": 1}, r"config\.clip_sample: expected bool"),
        ({"beta_schedule": ""}, "beta_schedule must be one of"),
    ],
)
def test_config_values_of_the_wrong_type_or_unknown_to_the_schedulers_are_named(checkpoint, fields, match):
    edit_config(checkpoint, **fields)
    with pytest.raises(ValueError, match=match):
        load_policy(checkpoint)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"device": "x"}, r"device must name a torch device .* got 'x'"),
        ({"device": ""}, r"device must name a torch device"),
        ({"num_train_timesteps": 2**40}, r"num_train_timesteps must be in \[1, 10000\], got 1099511627776"),
    ],
)
def test_a_damaged_device_or_a_vast_schedule_is_named_not_run(checkpoint, fields, match):
    edit_config(checkpoint, **fields)
    with pytest.raises(ValueError, match=match):
        load_policy(checkpoint)


@pytest.mark.parametrize("fill", [2**40, 2**70])
def test_a_fill_value_too_large_for_its_dtype_is_store_damage(tmp_path, fill):
    make_store(tmp_path / "s.zarr", episodes=2, camera=True)
    meta_path = tmp_path / "s.zarr" / "data" / "observation.images.top" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"fill_value": fill}))
    with pytest.raises(StoreError, match="damaged metadata"):
        EpisodeStore.open(tmp_path / "s.zarr")


def test_checkpoint_fields_of_the_wrong_kind_are_named(checkpoint):
    meta = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps(meta | {"policy": ["diffusion"]}))
    with pytest.raises(ValueError, match="field 'policy' must be a str"):
        inspect_checkpoint(checkpoint)


def test_a_shrunken_frame_shape_or_commit_record_is_not_read_quietly(store_path):
    from visuomotor.datasets.verify import verify_store

    meta_path = store_path / "data" / "action" / "zarr.json"
    original = meta_path.read_text()
    meta = json.loads(original)
    meta["shape"][1] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"'data/action' has frames of shape \[1\] but chunks of \[2\]"):
        EpisodeStore.open(store_path)
    meta_path.write_text(original)
    ends_path = store_path / "meta" / "episode_ends" / "zarr.json"
    ends = json.loads(ends_path.read_text())
    ends["shape"] = [0]  # the commit record forgets both episodes
    ends_path.write_text(json.dumps(ends))
    problems = verify_store(EpisodeStore.open(store_path))
    assert any("commits 0 episodes but meta 'episodes' lists 2" in str(p) for p in problems)
