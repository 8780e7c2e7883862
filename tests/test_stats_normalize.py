"""Normalisation statistics, the Normalizer module, and image helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import IMAGE_KEY, concat, episode_arrays, make_store

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets import stats as stats_mod
from visuomotor.datasets.images import center_crop, random_crop, random_shift, resize, to_float_chw
from visuomotor.datasets.normalize import Normalizer
from visuomotor.datasets.stats import HIST_BINS, compute_stats, load_stats


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A few thousand low-dim frames with different distributions per dimension."""
    path = tmp_path_factory.mktemp("stats") / "s.zarr"
    rng = np.random.default_rng(7)
    store = EpisodeStore.create(path, fps=10)
    episodes = []
    for e in range(4):
        n = 900 + 37 * e
        state = np.stack(
            [
                rng.uniform(-3.0, 5.0, n),
                rng.normal(2.0, 0.5, n),
                rng.exponential(1.0, n),
                np.full(n, 0.25),  # a constant dimension
            ],
            axis=1,
        ).astype(np.float32)
        data = {
            "observation.state": state,
            "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "counter": np.arange(n, dtype=np.int64)[:, None] + 1,  # not a float key: no stats by default
        }
        store.append_episode(data)
        episodes.append(data)
    return path, episodes


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    """400 frames of 8x8 RGB (one chunk per frame, so kept small); channel 1 halved."""
    path = tmp_path_factory.mktemp("stats_img") / "s.zarr"
    rng = np.random.default_rng(8)
    store = EpisodeStore.create(path, fps=10)
    episodes = []
    for _ in range(4):
        images = rng.integers(1, 256, (100, 8, 8, 3), dtype=np.uint8)
        images[..., 1] //= 2
        data = {IMAGE_KEY: images, "action": rng.uniform(-1, 1, (100, 2)).astype(np.float32)}
        store.append_episode(data)
        episodes.append(data)
    return path, episodes


def test_lowdim_stats_match_numpy(big_store):
    path, episodes = big_store
    store = EpisodeStore.open(path)
    stats = compute_stats(store)
    assert set(stats) == {"observation.state", "action"}
    for key in ("observation.state", "action"):
        x = concat(episodes, key).astype(np.float64)
        s = {k: np.asarray(v) for k, v in stats[key].items()}
        assert all(v.shape == x.shape[1:] for v in s.values())
        np.testing.assert_array_equal(s["min"], x.min(0))
        np.testing.assert_array_equal(s["max"], x.max(0))
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-9, atol=1e-12)
        # The histogram quantile lies in the bin where the CDF crosses q, so it is within one bin of the
        # order statistics there; np.quantile interpolates between neighbouring order statistics (and
        # uses q*(N-1) rather than q*N). Bound: 2 bins plus the local gap between order statistics.
        xs = np.sort(x, axis=0)
        n = len(x)
        for q, name in ((0.01, "q01"), (0.99, "q99")):
            want = np.quantile(x, q, axis=0)
            k = int(q * (n - 1))
            gap = xs[min(k + 2, n - 1)] - xs[max(k - 1, 0)]
            tol = 2 * (x.max(0) - x.min(0)) / HIST_BINS + gap
            assert (np.abs(s[name] - want) <= tol + 1e-12).all(), (key, name, s[name], want, tol)
            # With ~3.7k frames that is a small fraction of the range.
            spread = np.where(x.max(0) > x.min(0), x.max(0) - x.min(0), 1.0)
            assert (np.abs(s[name] - want) / spread < 5e-3).all(), (key, name)
    const = np.asarray(stats["observation.state"]["q01"])[3]
    assert const == np.float32(0.25) and np.asarray(stats["observation.state"]["std"])[3] == 0


def test_image_stats_per_channel_in_unit_range(image_store):
    path, episodes = image_store
    stats = compute_stats(EpisodeStore.open(path), [IMAGE_KEY])[IMAGE_KEY]
    x = concat(episodes, IMAGE_KEY).reshape(-1, 3).astype(np.float64) / 255.0
    s = {k: np.asarray(v) for k, v in stats.items()}
    assert all(v.shape == (3,) for v in s.values())
    np.testing.assert_allclose(s["min"], x.min(0), atol=1e-12)
    np.testing.assert_allclose(s["max"], x.max(0), atol=1e-12)
    np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-9)
    assert (s["min"] >= 0).all() and (s["max"] <= 1).all()
    assert s["max"][1] < 0.51  # the halved channel


def test_image_quantiles_match_numpy(image_store):
    path, episodes = image_store
    stats = compute_stats(EpisodeStore.open(path), [IMAGE_KEY])[IMAGE_KEY]
    x = concat(episodes, IMAGE_KEY).reshape(-1, 3).astype(np.float64) / 255.0
    # Values are multiples of 1/255 and each bin is one grey level wide: within half a level.
    for q, name in ((0.01, "q01"), (0.99, "q99")):
        np.testing.assert_allclose(stats[name], np.quantile(x, q, axis=0), atol=0.5 / 255 + 1e-9)


def test_stats_saved_reused_and_recomputed_after_append(tmp_path, monkeypatch):
    store, _episodes = make_store(tmp_path / "s", episodes=2, lengths=[15, 12])
    stats = compute_stats(store)
    assert store.attrs["stats"] == stats
    assert store.attrs["stats_frames"] == dict.fromkeys(stats, 27)  # frames covered, per key

    ro = EpisodeStore.open(tmp_path / "s")
    assert ro.attrs["stats"] == stats
    with monkeypatch.context() as m:  # current saved stats are reused, not recomputed

        def boom(*args, **kwargs):
            raise AssertionError("recomputed")

        m.setattr(stats_mod, "compute_stats", boom)
        m.setattr(stats_mod, "compute_key_stats", boom)
        assert load_stats(ro, ["action", IMAGE_KEY]) == {
            "action": stats["action"],
            IMAGE_KEY: stats[IMAGE_KEY],
        }

    store = EpisodeStore.open(tmp_path / "s", mode="a")
    extra = episode_arrays(9, episode=2, first_frame=27)
    extra["action"][:, 1] = 50.0  # moves max
    store.append_episode(extra)
    fresh = load_stats(store, ["action"])
    assert fresh["action"]["max"][1] == 50.0
    assert fresh["action"]["max"][0] == 35.0  # the last global frame index
    reopened = EpisodeStore.open(tmp_path / "s")
    assert reopened.attrs["stats_frames"]["action"] == 36
    assert reopened.attrs["stats_frames"]["observation.state"] == 27  # not recomputed: still stale
    assert reopened.attrs["stats"]["action"] == fresh["action"]
    assert reopened.attrs["stats"]["observation.state"] == stats["observation.state"]  # kept, merged

    # A read-only store with stale statistics computes without saving.
    store.append_episode(episode_arrays(4, episode=3, first_frame=36))
    ro = EpisodeStore.open(tmp_path / "s")
    got = load_stats(ro, ["action"])
    assert got["action"]["max"][0] == 39.0
    assert EpisodeStore.open(tmp_path / "s").attrs["stats_frames"]["action"] == 36


def test_stats_of_other_keys_not_marked_current_by_partial_recompute(tmp_path):
    store, episodes = make_store(tmp_path / "s", episodes=2, lengths=[15, 12])
    compute_stats(store)  # every key, at 27 frames
    extra = episode_arrays(9, episode=2, first_frame=27)
    store.append_episode(extra)
    load_stats(store, ["action"])  # recomputes and saves 'action' at 36 frames
    got = load_stats(store, ["observation.state"])  # its saved stats are from 27 frames: stale
    all_state = np.concatenate([concat(episodes, "observation.state"), extra["observation.state"]])
    np.testing.assert_array_equal(got["observation.state"]["max"], all_state.max(0))


def test_stats_of_empty_store_errors(tmp_path):
    _store, _ = make_store(tmp_path / "s", episodes=1, lengths=[3])
    empty = EpisodeStore.create(tmp_path / "e", fps=10)
    assert compute_stats(empty) == {}  # no keys yet
    with pytest.raises(ValueError, match="empty store"):
        stats_mod.compute_key_stats(empty, "action")


# ---------------------------------------------------------------- Normalizer


def _stats_of(x: np.ndarray) -> dict[str, list[float]]:
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}


def test_min_max_maps_to_unit_interval_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 3, (200, 3))
    x[:, 2] = 1.5  # constant dimension
    norm = Normalizer.from_stats({"action": _stats_of(x)}, {"action": "min_max"})
    xt = torch.tensor(x, dtype=torch.float32)
    y = norm.normalize({"action": xt, "other": xt})["action"]
    assert torch.isfinite(y).all()
    np.testing.assert_allclose(y[:, :2].min(0).values, -1.0, atol=1e-6)
    np.testing.assert_allclose(y[:, :2].max(0).values, 1.0, atol=1e-6)
    assert (y[:, 2] == 0).all()  # constant dimension maps to 0, no division by ~0
    torch.testing.assert_close(norm.unnormalize("action", y), xt, rtol=1e-6, atol=1e-5)
    assert norm.normalize({"other": xt})["other"] is xt  # unknown keys untouched
    lo, hi = torch.tensor(x.min(0), dtype=torch.float32), torch.tensor(x.max(0), dtype=torch.float32)
    torch.testing.assert_close(norm.normalize_key("action", lo[None])[0, :2], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(norm.normalize_key("action", hi[None])[0, :2], torch.tensor([1.0, 1.0]))


def test_mean_std_and_identity():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (500, 4))
    x[:, 3] = -2.0
    norm = Normalizer.from_stats(
        {"observation.state": _stats_of(x)}, {"observation.state": "mean_std", "action": "identity"}
    )
    y = norm.normalize_key("observation.state", torch.tensor(x)).numpy()
    np.testing.assert_allclose(y[:, :3].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y[:, :3].std(0), 1.0, atol=1e-5)
    assert np.isfinite(y).all() and (y[:, 3] == 0).all()
    np.testing.assert_allclose(norm.unnormalize("observation.state", torch.tensor(y)).numpy(), x, atol=1e-4)
    a = torch.randn(5, 2)
    assert torch.equal(norm.normalize_key("action", a), a)
    assert torch.equal(norm.unnormalize("action", a), a)


def test_image_per_channel_broadcast():
    stats = {"min": [0.0, 0.2, 0.5], "max": [1.0, 0.6, 0.5], "mean": [0.5, 0.4, 0.5], "std": [0.1, 0.2, 0.0]}
    x = torch.rand(2, 3, 3, 5, 6, generator=torch.Generator().manual_seed(0))  # (B, T, C, H, W)
    x[:, :, 2] = 0.5  # channel 2 is constant, as its statistics say
    for mode in ("min_max", "mean_std"):
        norm = Normalizer.from_stats({IMAGE_KEY: stats}, {IMAGE_KEY: mode})
        y = norm.normalize_key(IMAGE_KEY, x)
        assert y.shape == x.shape
        for c in range(3):
            if mode == "min_max":
                lo, hi = stats["min"][c], stats["max"][c]
                want = (x[:, :, c] - lo) / (hi - lo) * 2 - 1 if hi > lo else x[:, :, c] - lo
            else:
                want = (x[:, :, c] - stats["mean"][c]) / max(stats["std"][c], 1e-6)
            torch.testing.assert_close(y[:, :, c], want, rtol=1e-5, atol=1e-5)
        assert (y[:, :, 2] == 0).all()  # a constant channel maps to 0 in both modes
        torch.testing.assert_close(norm.unnormalize(IMAGE_KEY, y), x, rtol=1e-5, atol=1e-5)


def test_save_load_safetensors(tmp_path):
    rng = np.random.default_rng(2)
    stats = {
        "action": _stats_of(rng.normal(size=(50, 2))),
        "observation.state": _stats_of(rng.normal(size=(50, 5))),
        IMAGE_KEY: _stats_of(rng.uniform(size=(50, 3))),
    }
    modes = {"action": "min_max", "observation.state": "mean_std", IMAGE_KEY: "mean_std"}
    norm = Normalizer.from_stats(stats, modes)
    norm.save(tmp_path / "norm.safetensors")
    shapes = {"action": (2,), "observation.state": (5,), IMAGE_KEY: (3,)}
    fresh = Normalizer(modes, shapes)
    fresh.load(tmp_path / "norm.safetensors")
    a, b = norm.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    batch = {
        "action": torch.randn(4, 16, 2),
        "observation.state": torch.randn(4, 2, 5),
        IMAGE_KEY: torch.rand(4, 2, 3, 8, 8),
    }
    out_a, out_b = norm.normalize(batch), fresh.normalize(batch)
    for k in batch:
        assert torch.equal(out_a[k], out_b[k]), k
    assert not (tmp_path / "norm.safetensors").read_bytes().startswith(b"\x80")  # not a pickle


def test_normalizer_errors():
    with pytest.raises(ValueError, match="must be one of"):
        Normalizer({"action": "zscore"}, {"action": (2,)})
    with pytest.raises(ValueError, match="no statistics shape"):
        Normalizer({"action": "min_max"}, {})
    with pytest.raises(KeyError, match="no statistics for 'action'"):
        Normalizer.from_stats({}, {"action": "min_max"})


# ---------------------------------------------------------------- images


def test_to_float_chw():
    x = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8)
    y = to_float_chw(x)
    assert y.shape == (2, 3, 3, 5, 7) and y.dtype == torch.float32
    assert y.min() >= 0.0 and y.max() <= 1.0
    torch.testing.assert_close(y, x.permute(0, 1, 4, 2, 3).float() / 255)
    assert to_float_chw(torch.full((1, 1, 3), 255, dtype=torch.uint8)).eq(1.0).all()
    with pytest.raises(TypeError, match="uint8"):
        to_float_chw(torch.rand(2, 5, 7, 3))


def test_random_shift_moves_each_sample_by_at_most_pad_pixels_the_same_over_time():
    x = torch.rand(16, 2, 3, 8, 8)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x.reshape(-1, 3, 8, 8), (2, 2, 2, 2), mode="replicate").reshape(
        16, 2, 3, 12, 12
    )
    offsets = []
    for b in range(16):  # each sample is the padded image at one offset, the same for both frames
        found = [
            (t, left)
            for t in range(5)
            for left in range(5)
            if torch.equal(y[b], padded[b, :, :, t : t + 8, left : left + 8])
        ]
        assert found, f"sample {b} is not a shifted copy of its input"
        offsets.append(found[0])
    assert len(set(offsets)) > 1  # the offsets differ between samples
    assert random_shift(x, 0) is x
    with pytest.raises(ValueError, match="shift padding"):
        random_shift(x, -1)


def test_center_crop_and_resize():
    x = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).reshape(2, 1, 3, 8, 10)
    c = center_crop(x, (4, 6))
    assert c.shape == (2, 1, 3, 4, 6)
    assert torch.equal(c, x[..., 2:6, 2:8])
    assert center_crop(x, 8).shape == (2, 1, 3, 8, 8)
    with pytest.raises(ValueError, match="larger than image"):
        center_crop(x, 9)
    r = resize(x, (4, 5))
    assert r.shape == (2, 1, 3, 4, 5)
    assert resize(torch.rand(3, 8, 8), 16).shape == (3, 16, 16)
    flat = torch.full((1, 2, 3, 8, 8), 0.3)
    torch.testing.assert_close(resize(flat, 5), torch.full((1, 2, 3, 5, 5), 0.3))


def test_random_crop_shares_offset_over_time_and_varies_over_batch():
    B, T = 16, 3
    base = torch.arange(12 * 12, dtype=torch.float32).reshape(1, 1, 1, 12, 12)
    x = base.expand(B, T, 2, 12, 12).clone()
    x[:, 1] += 1000  # time steps differ in content, same geometry
    out = random_crop(x, 8, generator=torch.Generator().manual_seed(0))
    assert out.shape == (B, T, 2, 8, 8)
    tops = (out[:, :, :, 0, 0] % 1000) // 12
    lefts = (out[:, :, :, 0, 0] % 1000) % 12
    # One offset per sample: same over time and channels; the crop is a contiguous window.
    assert (tops == tops[:, :1, :1]).all() and (lefts == lefts[:, :1, :1]).all()
    for b in range(B):
        t, left = int(tops[b, 0, 0]), int(lefts[b, 0, 0])
        assert torch.equal(out[b], x[b, :, :, t : t + 8, left : left + 8])
    assert len({(int(tops[b, 0, 0]), int(lefts[b, 0, 0])) for b in range(B)}) > 1
    again = random_crop(x, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="larger than image"):
        random_crop(x, 13)
