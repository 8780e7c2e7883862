"""SequenceSampler windows (Diffusion Policy semantics), episode splits, and the torch DataLoader views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, concat, make_store

from visuomotor.datasets import EpisodeStore, SequenceSampler, WindowSpec, split_episodes
from visuomotor.datasets.torch_data import WindowDataset, make_dataloader

# Includes episodes shorter than the horizon (9) and a single frame (1).
LENGTHS = [20, 1, 9, 33, 16]
TO, H = 2, 16


@pytest.fixture(scope="module")
def store_and_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("sampler") / "s.zarr"
    _, episodes = make_store(path, episodes=len(LENGTHS), lengths=LENGTHS, tasks=["a", "b", "a", "c", "b"])
    return EpisodeStore.open(path), episodes


def dp_create_indices(episode_ends, sequence_length, pad_before, pad_after):
    """Diffusion Policy's `create_indices` (diffusion_policy/common/sampler.py), written out again:
    rows [buffer_start, buffer_end) fill window slots [sample_start, sample_end); idx is the window
    start relative to the episode."""
    indices = []
    for i, end in enumerate(episode_ends):
        start = 0 if i == 0 else int(episode_ends[i - 1])
        length = int(end) - start
        for idx in range(-pad_before, length - sequence_length + pad_after + 1):
            buffer_start = max(idx, 0) + start
            buffer_end = min(idx + sequence_length, length) + start
            start_offset = buffer_start - (idx + start)
            end_offset = (idx + sequence_length + start) - buffer_end
            indices.append((buffer_start, buffer_end, start_offset, sequence_length - end_offset, idx))
    return indices


def dp_window_rows(index, sequence_length):
    """Global rows of each window slot as DP's `sample_sequence` fills them, and the padded slots."""
    buffer_start, buffer_end, sample_start, sample_end, _ = index
    rows = np.empty(sequence_length, np.int64)
    rows[sample_start:sample_end] = np.arange(buffer_start, buffer_end)
    rows[:sample_start] = buffer_start  # repeat the first frame
    rows[sample_end:] = buffer_end - 1  # repeat the last frame
    pad = np.ones(sequence_length, bool)
    pad[sample_start:sample_end] = False
    return rows, pad


@pytest.mark.parametrize(("pad_before", "pad_after"), [(None, None), (0, 0), (1, 7), (0, 15)])
def test_windows_match_diffusion_policy_create_indices(store_and_data, pad_before, pad_after):
    store, episodes = store_and_data
    spec = WindowSpec(n_obs_steps=TO, horizon=H, pad_before=pad_before, pad_after=pad_after)
    sampler = SequenceSampler(store, spec)
    pb = TO - 1 if pad_before is None else pad_before
    pa = H - 1 if pad_after is None else pad_after
    ref = dp_create_indices(store.episode_ends, H, pb, pa)
    assert len(sampler) == len(ref)
    if pad_before is None:
        # DP's count with the default pads: L + To - 1 windows per episode.
        assert len(sampler) == sum(n + TO - 1 for n in LENGTHS)
    batch = sampler.sample(np.arange(len(sampler)))
    state, action = concat(episodes, "observation.state"), concat(episodes, "action")
    for w, index in enumerate(ref):
        rows, pad = dp_window_rows(index, H)
        np.testing.assert_array_equal(batch["action"][w], action[rows], err_msg=f"window {w}")
        np.testing.assert_array_equal(batch["action_is_pad"][w], pad)
        # Observations are DP's first To slots (key_first_k).
        np.testing.assert_array_equal(batch["observation.state"][w], state[rows[:TO]])
        np.testing.assert_array_equal(batch["observation.state_is_pad"][w], pad[:TO])
        # The anchor is the last observation slot: t = s + To - 1 (it may lie past the end, as in DP).
        assert batch["frame_index"][w] == index[4] + TO - 1
        assert (batch["observation.state"][w][:, 1] == batch["episode_index"][w]).all()


def test_anchor_range_and_default_offsets():
    spec = WindowSpec(n_obs_steps=TO, horizon=H)
    np.testing.assert_array_equal(spec.offsets("observation.state"), [-1, 0])
    np.testing.assert_array_equal(spec.offsets("action"), np.arange(-1, 15))
    for length in (1, 5, 16, 40):
        lo, hi = spec.anchor_range(length)
        # Window starts s in [-(To-1), L - H + (H-1)], anchor t = s + To - 1.
        assert (lo, hi) == (0, length - 1 + TO - 1)
    lo, hi = WindowSpec(n_obs_steps=3, horizon=8, pad_before=0, pad_after=0).anchor_range(20)
    assert (lo, hi) == (2, 20 - 8 + 2)


def test_padding_repeats_edge_frames_and_marks_them(store_and_data):
    store, episodes = store_and_data
    sampler = SequenceSampler(
        store, WindowSpec(n_obs_steps=TO, horizon=H, obs_keys=("observation.state", IMAGE_KEY))
    )
    batch = sampler.sample(np.arange(len(sampler)))
    for w in range(len(sampler)):
        e, t = int(batch["episode_index"][w]), int(batch["frame_index"][w])
        data, n = episodes[e], LENGTHS[e]
        for key, offsets in ((IMAGE_KEY, range(-1, 1)), ("action", range(-1, 15))):
            frames = np.array([t + o for o in offsets])
            np.testing.assert_array_equal(batch[f"{key}_is_pad"][w], (frames < 0) | (frames >= n))
            np.testing.assert_array_equal(batch[key][w], data[key][np.clip(frames, 0, n - 1)])
        # Windows never cross episodes: every frame read belongs to episode e.
        assert (batch["observation.state"][w][:, 1] == e).all()
    # The first window of episode 0 pads one frame before; the last pads 15 after.
    first = np.flatnonzero(batch["episode_index"] == 0)[0]
    assert batch["frame_index"][first] == 0
    np.testing.assert_array_equal(batch["observation.state_is_pad"][first], [True, False])
    np.testing.assert_array_equal(batch["observation.state"][first][0], batch["observation.state"][first][1])
    last = np.flatnonzero(batch["episode_index"] == 0)[-1]
    assert batch["frame_index"][last] == LENGTHS[0]
    assert batch["action_is_pad"][last].sum() == 15
    assert (batch["action"][last][1:] == episodes[0]["action"][-1]).all()


def test_custom_key_offsets(store_and_data):
    store, episodes = store_and_data
    offsets = (0, 4, 8, 12)
    spec = WindowSpec(
        n_obs_steps=TO, horizon=H, obs_keys=("observation.state",), key_offsets={IMAGE_KEY: offsets}
    )
    assert spec.keys == ("observation.state", "action", IMAGE_KEY)
    sampler = SequenceSampler(store, spec)
    idx = np.arange(len(sampler))
    batch = sampler.sample(idx)
    assert batch[IMAGE_KEY].shape == (len(idx), 4, 8, 8, 3)
    for w in idx:
        e, t = int(batch["episode_index"][w]), int(batch["frame_index"][w])
        frames = t + np.array(offsets)
        n = LENGTHS[e]
        np.testing.assert_array_equal(batch[IMAGE_KEY][w], episodes[e][IMAGE_KEY][np.clip(frames, 0, n - 1)])
        np.testing.assert_array_equal(batch[f"{IMAGE_KEY}_is_pad"][w], frames >= n)
    # Offsets override the defaults for obs keys too.
    spec = WindowSpec(n_obs_steps=3, horizon=4, key_offsets={"observation.state": (-5, 0, 2)})
    np.testing.assert_array_equal(spec.offsets("observation.state"), [-5, 0, 2])
    np.testing.assert_array_equal(spec.offsets("action"), [-2, -1, 0, 1])


def test_episode_subset_and_task_index(store_and_data):
    store, _ = store_and_data
    spec = WindowSpec(n_obs_steps=TO, horizon=H)
    sampler = SequenceSampler(store, spec, episodes=[3, 0])
    assert len(sampler) == (LENGTHS[3] + 1) + (LENGTHS[0] + 1)
    batch = sampler.sample(np.arange(len(sampler)))
    assert set(batch["episode_index"].tolist()) == {0, 3}
    assert set(batch["observation.state"][:, :, 1].ravel().tolist()) == {0.0, 3.0}
    assert sampler.tasks == ["a", "b", "c"]
    np.testing.assert_array_equal(batch["task_index"], np.where(batch["episode_index"] == 3, 2, 0))
    assert len(SequenceSampler(store, spec, episodes=[])) == 0
    with pytest.raises(IndexError, match="episode index out of range"):
        SequenceSampler(store, spec, episodes=[5])
    with pytest.raises(IndexError, match="window index out of range"):
        sampler.sample([len(sampler)])


def test_unknown_key_lists_store_keys(store_and_data):
    store, _ = store_and_data
    with pytest.raises(
        KeyError, match=r"window key 'observation.nope' is not in the store.*observation\.state"
    ):
        SequenceSampler(store, WindowSpec(obs_keys=("observation.nope",)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_obs_steps": 0},
        {"horizon": 0},
        {"pad_before": -1},
        {"pad_after": -1},
        {"key_offsets": {"action": ()}},
    ],
)
def test_window_spec_validation(kwargs):
    with pytest.raises(ValueError):
        WindowSpec(**kwargs)


def test_cache_on_and_off_identical(store_and_data):
    store, _ = store_and_data
    spec = WindowSpec(n_obs_steps=TO, horizon=H, obs_keys=("observation.state", IMAGE_KEY))
    cached, uncached = SequenceSampler(store, spec), SequenceSampler(store, spec, cache_bytes=0)
    assert set(cached.cached_keys) == {"observation.state", "action", IMAGE_KEY}
    assert uncached.cached_keys == []
    cached.warm()
    idx = np.random.default_rng(0).integers(0, len(cached), size=40)
    a, b = cached.sample(idx), uncached.sample(idx)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # A budget that fits only the low-dim arrays leaves images uncached.
    small = SequenceSampler(
        store, spec, cache_bytes=store.nbytes("action") + store.nbytes("observation.state")
    )
    assert set(small.cached_keys) == {"observation.state", "action"}


@pytest.mark.parametrize(("shuffle", "drop_last"), [(True, False), (False, False), (True, True)])
def test_batches_cover_every_window_once(store_and_data, shuffle, drop_last):
    store, _ = store_and_data
    sampler = SequenceSampler(store, WindowSpec(n_obs_steps=TO, horizon=H))
    seen = []
    for batch in sampler.batches(7, shuffle=shuffle, seed=3, drop_last=drop_last):
        assert len(batch["frame_index"]) == 7 or not drop_last
        ids = batch["episode_index"] * 1000 + batch["frame_index"]
        seen.extend(ids.tolist())
    every = sampler.sample(np.arange(len(sampler)))
    all_ids = (every["episode_index"] * 1000 + every["frame_index"]).tolist()
    assert len(set(all_ids)) == len(all_ids)  # windows are distinct
    assert len(seen) == len(set(seen))
    if drop_last:
        assert len(seen) == len(sampler) // 7 * 7 and set(seen) <= set(all_ids)
    else:
        assert sorted(seen) == sorted(all_ids)
    if not shuffle:
        assert seen == all_ids
    again = [
        b["frame_index"].tolist() for b in sampler.batches(7, shuffle=shuffle, seed=3, drop_last=drop_last)
    ]
    first = [
        b["frame_index"].tolist() for b in sampler.batches(7, shuffle=shuffle, seed=3, drop_last=drop_last)
    ]
    assert again == first  # deterministic by seed


def test_split_episodes():
    for n, ratio in [(10, 0.2), (7, 0.5), (3, 0.1), (2, 0.9), (1, 0.5), (50, 0.0)]:
        train, val = split_episodes(n, ratio, seed=1)
        assert len(train) >= 1
        assert set(train).isdisjoint(val)
        assert sorted([*train, *val]) == list(range(n))
        if ratio > 0 and n > 1:
            assert len(val) >= 1
        t2, v2 = split_episodes(n, ratio, seed=1)
        np.testing.assert_array_equal(train, t2)
        np.testing.assert_array_equal(val, v2)
    assert len(split_episodes(10, 0.2)[1]) == 2
    splits = {tuple(split_episodes(20, 0.25, seed=s)[1]) for s in range(5)}
    assert len(splits) > 1  # the seed matters
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            split_episodes(10, bad)


# ---------------------------------------------------------------- torch


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_matches_sample(store_and_data, num_workers, batched):
    store, _ = store_and_data
    spec = WindowSpec(n_obs_steps=TO, horizon=H, obs_keys=("observation.state", IMAGE_KEY))
    sampler = SequenceSampler(store, spec)
    sampler.warm()
    loader = make_dataloader(
        sampler, batch_size=8, shuffle=False, num_workers=num_workers, drop_last=False, batched=batched
    )
    n = 0
    for i, batch in enumerate(loader):
        expected = sampler.sample(np.arange(i * 8, min((i + 1) * 8, len(sampler))))
        assert batch.keys() == expected.keys()
        for key, value in expected.items():
            assert isinstance(batch[key], torch.Tensor), key
            np.testing.assert_array_equal(batch[key].numpy(), value, err_msg=key)
        n += len(batch["frame_index"])
    assert n == len(sampler)
    del loader
    dtypes = {
        "observation.state": torch.float32,
        "action": torch.float32,
        IMAGE_KEY: torch.uint8,
        "action_is_pad": torch.bool,
        f"{IMAGE_KEY}_is_pad": torch.bool,
        "episode_index": torch.int64,
        "frame_index": torch.int64,
        "task_index": torch.int64,
    }
    for key, dtype in dtypes.items():
        assert batch[key].dtype == dtype, key
    assert batch[IMAGE_KEY].shape[1:] == (TO, 8, 8, 3)
    assert batch["action"].shape[1:] == (H, 2)


def test_dataloader_shuffle_and_drop_last(store_and_data):
    store, _ = store_and_data
    sampler = SequenceSampler(store, WindowSpec(n_obs_steps=TO, horizon=H))
    seen = []
    for batch in make_dataloader(sampler, batch_size=8, shuffle=True, seed=5):
        assert len(batch["frame_index"]) == 8  # drop_last by default
        seen.extend((batch["episode_index"] * 1000 + batch["frame_index"]).tolist())
    assert len(seen) == len(sampler) // 8 * 8 == len(set(seen))
    again = next(iter(make_dataloader(sampler, batch_size=8, shuffle=True, seed=5)))
    assert (again["episode_index"] * 1000 + again["frame_index"]).tolist() == seen[:8]


def test_window_dataset_item(store_and_data):
    store, _ = store_and_data
    sampler = SequenceSampler(store, WindowSpec(n_obs_steps=TO, horizon=H))
    ds = WindowDataset(sampler)
    assert len(ds) == len(sampler)
    item = ds[5]
    expected = sampler.sample([5])
    for key, value in expected.items():
        np.testing.assert_array_equal(item[key].numpy(), value[0], err_msg=key)
    assert item["action"].shape == (H, 2)
