"""Diffusion Policy zarr v2 stores (read-only open, conversion to v3) and the `visuomotor dataset` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from fixtures import IMAGE_KEY, chunk_file, make_dp_v2_store, make_store, run_cli

from visuomotor.datasets import EpisodeStore, SequenceSampler, StoreError, WindowSpec
from visuomotor.datasets.convert import convert

DP_LENGTHS = [11, 6, 17]


@pytest.fixture
def dp_store(tmp_path):
    path = tmp_path / "pusht_replay.zarr"
    arrays = make_dp_v2_store(path, DP_LENGTHS)
    return path, arrays


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- zarr v2 stores


def test_dp_v2_store_opens_read_only_with_same_api(dp_store):
    path, arrays = dp_store
    assert (path / ".zgroup").exists()
    store = EpisodeStore.open(path)
    assert store.zarr_format == 2
    assert store.num_episodes == 3 and store.num_frames == sum(DP_LENGTHS)
    np.testing.assert_array_equal(store.episode_ends, arrays["episode_ends"])
    assert store.keys == ["action", "img", "state"]
    assert store.shape("img") == (16, 16, 3) and store.dtype("img") == np.uint8
    for key in store.keys:
        np.testing.assert_array_equal(store.load(key), arrays[key])
        np.testing.assert_array_equal(store.episode(1, [key])[key], arrays[key][11:17])
        rows = np.array([33, 0, 12, 12, 5])
        np.testing.assert_array_equal(store.read_rows(key, rows), arrays[key][rows])
    assert store.tasks == [""] and store.episode_meta(0) == {}
    store.check_chunks()
    sampler = SequenceSampler(store, WindowSpec(obs_keys=("state", "img")))
    assert len(sampler) == sum(n + 1 for n in DP_LENGTHS)
    batch = sampler.sample([0])
    np.testing.assert_array_equal(batch["img"][0], arrays["img"][[0, 0]])


def test_dp_v2_store_refuses_append_mode(dp_store):
    path, _ = dp_store
    before = _tree(path)
    with pytest.raises(StoreError, match=r"zarr v2 stores open read-only.*visuomotor dataset convert"):
        EpisodeStore.open(path, mode="a")
    assert _tree(path) == before


def test_dp_v2_missing_chunk_is_an_error(dp_store):
    path, _ = dp_store
    (path / "data" / "img" / "12.0.0.0").unlink()  # episode 1 (frames 11..16)
    store = EpisodeStore.open(path)
    with pytest.raises(StoreError, match=r"reading 'img' \(episode 1\).*missing"):
        store.episode(1)
    with pytest.raises(
        StoreError, match=r"'data/img' is missing 1 chunk\(s\), first at frame 12 \(episode 1\)"
    ):
        store.check_chunks()


# ---------------------------------------------------------------- convert


def test_cli_convert_bit_identical(dp_store, tmp_path):
    src, arrays = dp_store
    dst = tmp_path / "out.zarr"
    code, out, err = run_cli(["dataset", "convert", str(src), str(dst)])
    assert code == 0, err
    assert "3 episodes" in out and f"{sum(DP_LENGTHS)} frames" in out
    store = EpisodeStore.open(dst, mode="r")
    assert store.zarr_format == 3 and (dst / "zarr.json").exists()
    np.testing.assert_array_equal(store.episode_ends, arrays["episode_ends"])
    assert store.keys == ["action", "img", "state"]
    for key in store.keys:
        got = store.load(key)
        assert got.dtype == arrays[key].dtype, key
        assert got.tobytes() == arrays[key].tobytes(), key  # bit for bit
    assert store.attrs["converted_from"]["format"] == "zarr2"
    assert store.attrs["format_version"] == 1
    store.check_chunks()
    EpisodeStore.open(dst, mode="a")  # the result is an ordinary writable v3 store


def test_cli_convert_rename(dp_store, tmp_path):
    src, arrays = dp_store
    dst = tmp_path / "out.zarr"
    code, _, err = run_cli(
        [
            "dataset",
            "convert",
            str(src),
            str(dst),
            "--rename",
            f"img={IMAGE_KEY}",
            "--rename",
            "state=observation.state",
        ]
    )
    assert code == 0, err
    store = EpisodeStore.open(dst)
    assert store.keys == sorted(["action", IMAGE_KEY, "observation.state"])
    np.testing.assert_array_equal(store.load(IMAGE_KEY), arrays["img"])
    np.testing.assert_array_equal(store.load("observation.state"), arrays["state"])
    assert store.array(IMAGE_KEY).chunks == (1, 16, 16, 3)  # image layout once it has an image name


def test_convert_v3_store_round_trip(tmp_path):
    make_store(tmp_path / "a", episodes=3, tasks=["x", "y", "x"])
    out = convert(tmp_path / "a", tmp_path / "b")
    src = EpisodeStore.open(tmp_path / "a")
    assert out.num_episodes == 3
    np.testing.assert_array_equal(out.episode_ends, src.episode_ends)
    assert [out.task(e) for e in range(3)] == ["x", "y", "x"]
    assert out.episode_meta(2) == src.episode_meta(2)
    assert out.fps == src.fps and out.env_id == src.env_id
    assert out.attrs["action_space"] == src.attrs["action_space"]
    for key in src.keys:
        assert out.load(key).tobytes() == src.load(key).tobytes()


def test_convert_into_existing_destination_refused(dp_store, tmp_path):
    src, _ = dp_store
    dst = tmp_path / "existing"
    make_store(dst, episodes=1, lengths=[4])
    before = _tree(dst)
    code, _, err = run_cli(["dataset", "convert", str(src), str(dst)])
    assert code == 2
    assert err.startswith("error: ") and "already exists" in err
    assert _tree(dst) == before
    with pytest.raises(FileExistsError):
        convert(src, dst)
    assert _tree(dst) == before


@pytest.mark.parametrize(
    ("argv_tail", "match"),
    [(["--rename", "nokey=x"], "cannot rename"), (["--rename", "img"], "OLD=NEW")],
)
def test_convert_bad_rename(dp_store, tmp_path, argv_tail, match):
    src, _ = dp_store
    dst = tmp_path / "out.zarr"
    code, _, err = run_cli(["dataset", "convert", str(src), str(dst), *argv_tail])
    assert code == 2 and err.startswith("error: ") and match in err
    assert not dst.exists()


def test_convert_failure_midway_removes_destination(dp_store, tmp_path):
    src, _ = dp_store
    # Renaming an array to an image name without it being uint8 (H, W, C) is refused by the store
    # when the first episode is appended: the half-written destination must not be left behind.
    dst = tmp_path / "out.zarr"
    with pytest.raises(StoreError, match=r"image array 'observation.images.state' must be"):
        convert(src, dst, rename={"state": "observation.images.state"})
    assert not dst.exists()


def test_convert_unrecognised_source(tmp_path):
    (tmp_path / "src").mkdir()
    code, _, err = run_cli(["dataset", "convert", str(tmp_path / "src"), str(tmp_path / "dst")])
    assert code == 2 and "unrecognised source format" in err
    code, _, err = run_cli(["dataset", "convert", str(tmp_path / "nope"), str(tmp_path / "dst")])
    assert code == 2 and err.startswith("error: ")
    assert not (tmp_path / "dst").exists()


# ---------------------------------------------------------------- dataset info / stats


def test_info_json(tmp_path):
    make_store(tmp_path / "s", episodes=3, lengths=[10, 13, 16], tasks=["push", "pick", "push"], fps=20)
    code, out, err = run_cli(["dataset", "info", str(tmp_path / "s"), "--json"])
    assert code == 0, err
    info = json.loads(out)
    assert info["episodes"] == 3
    assert info["frames"] == 39
    assert info["fps"] == 20
    assert info["tasks"] == ["push", "pick"]
    assert info["keys"] == {
        "action": {"shape": [2], "dtype": "float32", "chunks": info["keys"]["action"]["chunks"]},
        IMAGE_KEY: {"shape": [8, 8, 3], "dtype": "uint8", "chunks": [1, 8, 8, 3]},
        "observation.state": {
            "shape": [4],
            "dtype": "float32",
            "chunks": info["keys"]["observation.state"]["chunks"],
        },
    }
    assert info["episode_length"] == {"min": 10, "mean": 13.0, "max": 16}
    assert info["zarr_format"] == 3 and info["env_id"] == "test-env-v0"
    assert info["size_on_disk_bytes"] > 0 and info["has_stats"] is False


def test_info_table_lists_keys(tmp_path, dp_store):
    make_store(tmp_path / "s", episodes=2, lengths=[5, 7])
    code, out, _ = run_cli(["dataset", "info", str(tmp_path / "s")])
    assert code == 0
    assert "episodes   2" in out and "frames     12" in out
    for key, line in (
        ("action", "float32  (2,)"),
        ("observation.state", "float32  (4,)"),
        (IMAGE_KEY, "uint8    (8, 8, 3)"),
    ):
        assert any(key in row and line in row for row in out.splitlines()), (key, out)
    assert "'task 0'" in out and "'task 1'" in out
    code, out, _ = run_cli(["dataset", "info", str(dp_store[0])])
    assert code == 0 and "zarr v2" in out and "img" in out


def test_info_check_reports_missing_chunk(tmp_path):
    make_store(tmp_path / "s", episodes=2, lengths=[5, 7])
    assert run_cli(["dataset", "info", str(tmp_path / "s"), "--check"])[0] == 0
    chunk_file(tmp_path / "s", IMAGE_KEY, 8).unlink()
    code, out, _ = run_cli(["dataset", "info", str(tmp_path / "s")])
    assert code == 0  # without --check only metadata is read
    code, out, err = run_cli(["dataset", "info", str(tmp_path / "s"), "--check"])
    assert code != 0 and out == ""
    assert (
        err.startswith("error: ")
        and f"'data/{IMAGE_KEY}' is missing 1 chunk(s)" in err
        and "episode 1" in err
    )


@pytest.mark.parametrize("kind", ["empty-dir", "plain-file", "nonexistent", "non-monotonic"])
def test_info_on_bad_paths(tmp_path, kind):
    path = tmp_path / "x"
    if kind == "empty-dir":
        path.mkdir()
    elif kind == "plain-file":
        path.write_text("not a store")
    elif kind == "non-monotonic":
        make_store(path, episodes=3)
        zarr.open_array(str(path / "meta" / "episode_ends"), mode="r+")[:] = [10, 5, 20]
    code, out, err = run_cli(["dataset", "info", str(path)])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1  # one clear line, no traceback


def test_cli_stats_saves_into_store(tmp_path, dp_store):
    _store, episodes = make_store(tmp_path / "s", episodes=2, lengths=[6, 9])
    code, out, err = run_cli(["dataset", "stats", str(tmp_path / "s"), "--keys", "action"])
    assert code == 0, err
    printed = json.loads(out)
    assert set(printed) == {"action"}
    action = np.concatenate([e["action"] for e in episodes])
    np.testing.assert_allclose(printed["action"]["max"], action.max(0))
    reopened = EpisodeStore.open(tmp_path / "s")
    assert reopened.attrs["stats"]["action"] == printed["action"]
    assert json.loads(run_cli(["dataset", "info", str(tmp_path / "s"), "--json"])[1])["has_stats"] is True
    code, _, err = run_cli(["dataset", "stats", str(dp_store[0])])  # v2: read-only
    assert code == 2 and "convert" in err


def test_cli_stats_unknown_key_is_a_clean_error(tmp_path):
    make_store(tmp_path / "s", episodes=1, lengths=[4])
    code, _, err = run_cli(["dataset", "stats", str(tmp_path / "s"), "--keys", "observation.nope"])
    assert code == 2 and err.startswith("error: ") and "observation.nope" in err


def test_verify_finds_a_flipped_byte_and_repair_drops_only_that_episode(tmp_path):
    make_store(tmp_path / "s", episodes=3, lengths=[5, 7, 6])
    code, out, _ = run_cli(["dataset", "verify", str(tmp_path / "s")])
    assert code == 0 and "no problems" in out
    chunk = chunk_file(tmp_path / "s", IMAGE_KEY, 8)  # frame 8: episode 1
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    before = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    for argv in (
        ["dataset", "verify", str(tmp_path / "s")],
        ["dataset", "info", str(tmp_path / "s"), "--check"],
    ):
        code, _, err = run_cli(argv)
        assert code == 1 and f"problem: data/{IMAGE_KEY}, episode 1, frames 8..8" in err, err
    code, out, err = run_cli(["dataset", "verify", str(tmp_path / "s"), "--repair", str(tmp_path / "r")])
    assert code == 1 and "2 episodes kept, dropped [1]" in out
    repaired, original = EpisodeStore.open(tmp_path / "r"), EpisodeStore.open(tmp_path / "s")
    assert repaired.num_episodes == 2 and repaired.episode_lengths.tolist() == [5, 6]
    for new, old in ((0, 0), (1, 2)):
        for key in original.keys:
            assert np.array_equal(repaired.episode(new)[key], original.episode(old)[key])
        assert repaired.task(new) == original.task(old)
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == before  # untouched
    assert run_cli(["dataset", "verify", str(tmp_path / "r")])[0] == 0


def test_verify_checks_episode_ends_and_the_episode_list(tmp_path):
    import json

    make_store(tmp_path / "s", episodes=2, lengths=[5, 7])
    ends = next((tmp_path / "s" / "meta" / "episode_ends").rglob("c/*"))
    data = bytearray(ends.read_bytes())
    data[0] ^= 0x01  # the first end: 5 -> 4, caught by its checksum
    ends.write_bytes(bytes(data))
    code, _, err = run_cli(["dataset", "verify", str(tmp_path / "s")])
    assert code != 0 and "meta/episode_ends" in err and "checksum" in err.lower(), err
    make_store(tmp_path / "t", episodes=2, lengths=[5, 7])
    meta = tmp_path / "t" / "meta" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["episodes"] = doc["attributes"]["episodes"][:1]
    meta.write_text(json.dumps(doc))
    code, _, err = run_cli(["dataset", "verify", str(tmp_path / "t")])
    assert code == 1 and "meta 'episodes' lists 1 episodes, episode_ends 2" in err
