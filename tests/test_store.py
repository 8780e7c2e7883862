"""EpisodeStore and direct chunk reads: round trips, attributes, bad input, corruption, crash leftovers."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from fixtures import ACTION_DIM, IMAGE_KEY, STATE_DIM, chunk_file, concat, episode_arrays, make_store

from visuomotor.datasets import EpisodeStore, StoreError, is_image_key
from visuomotor.datasets.chunks import ChunkError, ChunkReader, gather_rows

LENGTHS = [12, 7, 20]


@pytest.fixture
def written(tmp_path):
    _store, episodes = make_store(tmp_path / "s.zarr", episodes=3, lengths=LENGTHS)
    return tmp_path / "s.zarr", episodes


# ---------------------------------------------------------------- round trips and attributes


def test_round_trip_episodes_frames_and_rows(written):
    path, episodes = written
    store = EpisodeStore.open(path)
    assert store.num_episodes == 3
    assert store.num_frames == sum(LENGTHS)
    np.testing.assert_array_equal(store.episode_ends, np.cumsum(LENGTHS))
    np.testing.assert_array_equal(store.episode_starts, [0, 12, 19])
    np.testing.assert_array_equal(store.episode_lengths, LENGTHS)
    assert store.keys == sorted(["action", "observation.state", IMAGE_KEY])
    for e, data in enumerate(episodes):
        got = store.episode(e)
        assert set(got) == set(data)
        for key in data:
            assert got[key].dtype == data[key].dtype
            np.testing.assert_array_equal(got[key], data[key])
    for key in store.keys:
        full = concat(episodes, key)
        np.testing.assert_array_equal(store.load(key), full)
        np.testing.assert_array_equal(store.frames(5, 30, [key])[key], full[5:30])
        # Any order, repeats, across episode and chunk boundaries.
        rows = np.array([38, 0, 0, 13, 11, 12, 38, 5, 19, 18])
        np.testing.assert_array_equal(store.read_rows(key, rows), full[rows])
        assert store.read_rows(key, np.zeros(0, np.int64)).shape == (0, *full.shape[1:])
    assert store.shape(IMAGE_KEY) == (8, 8, 3)
    assert store.shape("observation.state") == (STATE_DIM,)
    assert store.dtype(IMAGE_KEY) == np.uint8
    assert store.dtype("action") == np.float32


def test_episode_sub_range_and_bounds(written):
    path, episodes = written
    store = EpisodeStore.open(path)
    sub = store.episode(2, keys=["action", IMAGE_KEY], start=3, stop=11)
    assert set(sub) == {"action", IMAGE_KEY}
    np.testing.assert_array_equal(sub["action"], episodes[2]["action"][3:11])
    np.testing.assert_array_equal(sub[IMAGE_KEY], episodes[2][IMAGE_KEY][3:11])
    assert store.episode(1, start=7)["action"].shape == (0, ACTION_DIM)
    with pytest.raises(IndexError, match="episode 1 of length 7"):
        store.episode(1, start=0, stop=8)
    with pytest.raises(IndexError, match="episode 3 out of range"):
        store.episode(3)
    with pytest.raises(IndexError, match="out of range"):
        store.read_rows("action", np.array([sum(LENGTHS)]))
    with pytest.raises(IndexError, match="out of range"):
        store.read_rows("action", np.array([-1]))
    with pytest.raises(KeyError, match=r"no array 'data/nope'; the store has .*observation\.state"):
        store.read_rows("nope", np.array([0]))
    assert [store.episode_of(f) for f in (0, 11, 12, 18, 19, 38)] == [0, 0, 1, 1, 2, 2]


def test_attrs_tasks_and_episode_meta(tmp_path):
    store, _ = make_store(tmp_path / "s", episodes=3, tasks=["push", "pick up", "push"], fps=15)
    store.update_attrs({"robot": "panda"})
    store = EpisodeStore.open(tmp_path / "s")
    assert store.fps == 15.0
    assert store.env_id == "test-env-v0"
    assert store.attrs["action_space"] == {"type": "delta_ee", "dim": ACTION_DIM}
    assert store.attrs["robot"] == "panda"
    assert store.attrs["format_version"] == 1
    assert store.tasks == ["push", "pick up"]
    assert [store.task(e) for e in range(3)] == ["push", "pick up", "push"]
    assert store.episode_meta(1) == {"seed": 1, "success": False}
    assert store.episode_meta(2) == {"seed": 2, "success": True}
    with pytest.raises(IndexError):
        store.task(3)


def test_read_only_store_refuses_writes(written):
    path, _episodes = written
    store = EpisodeStore.open(path, mode="r")
    with pytest.raises(StoreError, match="read-only"):
        store.append_episode(episode_arrays(4, episode=3))
    with pytest.raises(StoreError, match="read-only"):
        store.update_attrs({"x": 1})
    assert EpisodeStore.open(path).num_episodes == 3
    with pytest.raises(ValueError, match="mode"):
        EpisodeStore.open(path, mode="w")


def test_create_refuses_existing_path_and_bad_fps(written, tmp_path):
    path, _ = written
    with pytest.raises(FileExistsError):
        EpisodeStore.create(path, fps=10)
    with pytest.raises(StoreError, match="fps"):
        EpisodeStore.create(tmp_path / "new", fps=0)


def test_append_mode_continues(written):
    path, episodes = written
    store = EpisodeStore.open(path, mode="a")
    extra = episode_arrays(5, episode=3, first_frame=sum(LENGTHS))
    assert store.append_episode(extra, task="new task", meta={"k": [1, 2]}) == 3
    store = EpisodeStore.open(path)
    assert store.num_episodes == 4
    assert store.num_frames == sum(LENGTHS) + 5
    assert store.tasks == ["task 0", "task 1", "new task"]
    assert store.episode_meta(3) == {"k": [1, 2]}
    for e, data in enumerate([*episodes, extra]):
        for key in data:
            np.testing.assert_array_equal(store.episode(e, [key])[key], data[key])


def test_float64_input_stored_as_float32(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", fps=10)
    data = {
        "observation.state": np.linspace(0, 1, 12, dtype=np.float64).reshape(6, 2),
        "action": np.ones((6, 1)),
    }
    store.append_episode(data)
    assert store.dtype("observation.state") == np.float32
    assert store.dtype("action") == np.float32
    # Later float64 episodes are cast to the store's float32 too.
    store.append_episode({"observation.state": np.full((3, 2), 0.1), "action": np.zeros((3, 1)) + 2})
    store = EpisodeStore.open(tmp_path / "s")
    got = store.load("observation.state")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:6], data["observation.state"].astype(np.float32))
    np.testing.assert_array_equal(got[6:], np.float32(0.1))


def test_image_and_lowdim_chunking(written):
    path, _ = written
    store = EpisodeStore.open(path)
    assert store.array(IMAGE_KEY).chunks == (1, 8, 8, 3)
    assert store.array("action").chunks[0] >= 1024
    assert is_image_key(IMAGE_KEY) and not is_image_key("observation.state")


def test_all_zero_frames_round_trip(tmp_path):
    # A black camera frame (or an all-zero action chunk) is ordinary data, not a missing chunk.
    store = EpisodeStore.create(tmp_path / "s", fps=10)
    data = episode_arrays(6)
    data[IMAGE_KEY][2] = 0
    data["action"][:] = 0
    store.append_episode(data)
    store = EpisodeStore.open(tmp_path / "s", mode="a")
    store.append_episode({k: np.zeros_like(v) for k, v in data.items()})
    store.check_chunks()
    np.testing.assert_array_equal(store.episode(0)[IMAGE_KEY], data[IMAGE_KEY])
    np.testing.assert_array_equal(store.episode(0)["action"], data["action"])
    np.testing.assert_array_equal(store.episode(1)[IMAGE_KEY], 0)


# ---------------------------------------------------------------- bad input


def _second_episode(store: EpisodeStore, **changes) -> dict[str, np.ndarray]:
    data = episode_arrays(6, episode=1)
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"action": np.zeros((5, ACTION_DIM), np.float32)}, r"episode 1: ragged lengths.*'action': 5"),
        ({"action": None}, r"episode 1: keys do not match the store: missing \['action'\]"),
        ({"extra.key": np.zeros((6, 1), np.float32)}, r"episode 1: .*unexpected \['extra.key'\]"),
        (
            {IMAGE_KEY: np.ones((6, 8, 8, 3), np.float32)},
            rf"episode 1: image array '{IMAGE_KEY}' must be uint8",
        ),
        ({"action": np.ones((6, ACTION_DIM), np.int64)}, r"episode 1: array 'action' must be floating point"),
        (
            {IMAGE_KEY: np.ones((6, 8, 8), np.uint8)},
            rf"episode 1: image array '{IMAGE_KEY}' must be \(T, H, W, C\)",
        ),
        ({IMAGE_KEY: np.ones((6, 8, 9, 3), np.uint8)}, rf"episode 1: array '{IMAGE_KEY}' has frame shape"),
        (
            {"observation.state": np.ones((6, STATE_DIM + 1), np.float32)},
            "episode 1: array 'observation.state' has frame shape",
        ),
        (
            {"observation.state": np.full((6, STATE_DIM), np.nan, np.float32)},
            "episode 1: array 'observation.state' contains NaN",
        ),
        ({"action": np.full((6, ACTION_DIM), np.inf)}, "episode 1: array 'action' contains NaN or inf"),
    ],
    ids=[
        "ragged",
        "missing",
        "unexpected",
        "float-image",
        "int-action",
        "image-3d",
        "image-shape",
        "state-shape",
        "nan",
        "inf",
    ],
)
def test_bad_episode_rejected_and_nothing_committed(tmp_path, change, match):
    store, episodes = make_store(tmp_path / "s", episodes=1, lengths=[8])
    with pytest.raises(StoreError, match=match):
        store.append_episode(_second_episode(store, **change))
    assert store.num_episodes == 1
    reopened = EpisodeStore.open(tmp_path / "s", mode="a")
    assert reopened.num_episodes == 1 and reopened.num_frames == 8
    np.testing.assert_array_equal(reopened.episode(0)["action"], episodes[0]["action"])
    # The store still takes a good episode afterwards.
    reopened.append_episode(episode_arrays(6, episode=1))
    assert EpisodeStore.open(tmp_path / "s").num_frames == 14


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"action": np.zeros((0, 2), np.float32)}, "episode 0: episode has no frames"),
        ({}, "episode 0: no arrays given"),
        (
            {IMAGE_KEY: np.ones((4, 8, 8, 3), np.float32)},
            f"episode 0: image array '{IMAGE_KEY}' must be uint8",
        ),
        ({"action": np.ones((4, 2), np.int32)}, "episode 0: array 'action' must be floating point"),
        ({"action": np.float32(1.0)}, "episode 0: arrays must be time-major"),
        ({"action": np.array([[0.0, np.nan]])}, "episode 0: array 'action' contains NaN"),
    ],
    ids=["empty", "no-arrays", "float-image", "int-action", "scalar", "nan"],
)
def test_bad_first_episode(tmp_path, data, match):
    store = EpisodeStore.create(tmp_path / "s", fps=10)
    with pytest.raises(StoreError, match=match):
        store.append_episode(data)
    assert EpisodeStore.open(tmp_path / "s").num_episodes == 0


# ---------------------------------------------------------------- corrupt and invalid stores


def test_non_monotonic_episode_ends(written):
    path, _ = written
    ends = zarr.open_array(str(path / "meta" / "episode_ends"), mode="r+")
    ends[:] = [12, 10, 39]
    with pytest.raises(StoreError, match=r"meta/episode_ends' is not strictly increasing at episode 1"):
        EpisodeStore.open(path)


def test_data_array_shorter_than_episode_ends(written):
    path, _ = written
    arr = zarr.open_array(str(path / "data" / "action"), mode="r+")
    arr.resize((25, ACTION_DIM))
    with pytest.raises(StoreError, match=r"'data/action' has 25 frames .* 39: episode 2 is incomplete"):
        EpisodeStore.open(path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "truncate-tiny"])
@pytest.mark.parametrize("key", [IMAGE_KEY, "action"])
def test_corrupted_chunk_names_key_and_episode(written, damage, key):
    path, episodes = written
    frame = 14  # episode 1
    f = chunk_file(path, key, frame)
    raw = bytearray(f.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x40
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = raw[:3]
    f.write_bytes(bytes(raw))
    store = EpisodeStore.open(path)
    with pytest.raises(
        StoreError, match=rf"reading '{key}' \(episode 1\).*(checksum|truncated|corrupt|decode)"
    ):
        store.episode(1, [key])
    if key == IMAGE_KEY:  # one frame per chunk: other episodes are still readable
        np.testing.assert_array_equal(store.episode(0, [key])[key], episodes[0][key])
        np.testing.assert_array_equal(store.episode(2, [key])[key], episodes[2][key])


def test_corrupted_chunk_in_multi_episode_read_names_its_episode(written):
    path, _ = written
    f = chunk_file(path, IMAGE_KEY, 14)  # episode 1
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    f.write_bytes(bytes(raw))
    store = EpisodeStore.open(path)
    with pytest.raises(StoreError, match=rf"'{IMAGE_KEY}' \(episode 1\)"):
        store.load(IMAGE_KEY)  # frames of episodes 0..2; only episode 1 is bad


def test_missing_chunk_file(written):
    path, _ = written
    chunk_file(path, IMAGE_KEY, 20).unlink()  # episode 2
    store = EpisodeStore.open(path)  # opening reads no data chunks
    with pytest.raises(StoreError, match=rf"reading '{IMAGE_KEY}' \(episode 2\).*missing"):
        store.episode(2)
    with pytest.raises(
        StoreError, match=rf"'data/{IMAGE_KEY}' is missing 1 chunk\(s\), first at frame 20 \(episode 2\)"
    ):
        store.check_chunks()
    store.episode(0)  # unaffected


def test_check_chunks_passes_on_intact_store(written):
    path, _ = written
    EpisodeStore.open(path).check_chunks()


@pytest.mark.parametrize("kind", ["empty-dir", "plain-file", "nonexistent", "bare-group", "no-episode-ends"])
def test_not_a_store(tmp_path, kind):
    path = tmp_path / "x"
    if kind == "empty-dir":
        path.mkdir()
    elif kind == "plain-file":
        path.write_text("hello")
    elif kind == "bare-group":
        zarr.open_group(str(path), mode="w", zarr_format=3)
    elif kind == "no-episode-ends":
        zarr.open_group(str(path), mode="w", zarr_format=3).create_group("data")
    expected = {
        "empty-dir": (StoreError, "not a zarr store"),
        "plain-file": (StoreError, "not a zarr store"),
        "nonexistent": (FileNotFoundError, "no such store"),
        "bare-group": (StoreError, "not an episode store: group 'data' is missing"),
        "no-episode-ends": (StoreError, "not an episode store: array 'meta/episode_ends' is missing"),
    }[kind]
    with pytest.raises(expected[0], match=expected[1]):
        EpisodeStore.open(path)


# ---------------------------------------------------------------- leftovers of a killed writer


def test_trailing_uncommitted_episode_end_is_ignored(written):
    path, episodes = written
    ends = zarr.open_array(str(path / "meta" / "episode_ends"), mode="r+")
    ends.resize((4,))  # grown, value never written: reads as the fill value -1
    assert ends[3] == -1
    store = EpisodeStore.open(path)
    assert store.num_episodes == 3 and store.num_frames == sum(LENGTHS)
    np.testing.assert_array_equal(store.episode(2)["action"], episodes[2]["action"])


def test_append_mode_trims_uncommitted_frames_then_appends(written):
    path, episodes = written
    total = sum(LENGTHS)
    root = zarr.open_group(str(path), mode="r+")
    # A writer died after writing 6 frames of episode 3 (and its attributes) but before committing it.
    for key, n in (("action", 6), ("observation.state", 6), (IMAGE_KEY, 4)):
        arr = root["data"][key]
        arr.resize((total + n, *arr.shape[1:]))
        arr[total:] = 7
    root["meta"].attrs["episodes"] = [*root["meta"].attrs["episodes"], {"task": "ghost", "meta": {}}]
    root["meta"]["episode_ends"].resize((4,))

    ro = EpisodeStore.open(path)  # read-only: ignores, does not modify
    assert ro.num_frames == total and ro.tasks == ["task 0", "task 1"]
    assert zarr.open_array(str(path / "data" / "action"), mode="r").shape[0] == total + 6

    store = EpisodeStore.open(path, mode="a")
    for key in store.keys:
        assert store.array(key).shape[0] == total, key
    assert zarr.open_array(str(path / "meta" / "episode_ends"), mode="r").shape == (3,)
    extra = episode_arrays(9, episode=3, first_frame=total)
    assert store.append_episode(extra, task="real") == 3

    store = EpisodeStore.open(path)
    assert store.num_episodes == 4 and store.num_frames == total + 9
    assert store.tasks == ["task 0", "task 1", "real"]
    assert store.task(3) == "real"
    for e, data in enumerate([*episodes, extra]):
        for key in data:
            np.testing.assert_array_equal(store.episode(e, [key])[key], data[key], err_msg=f"{key} ep {e}")
    store.check_chunks()


# ---------------------------------------------------------------- chunks.py


def test_chunk_reader_fast_path_matches_zarr(written):
    path, _ = written
    store = EpisodeStore.open(path)
    for key in store.keys:
        reader = ChunkReader(store.array(key), f"data/{key}")
        assert reader.fast, key
        rows = np.array([3, 3, 0, 38, 17, 12])
        np.testing.assert_array_equal(gather_rows(reader, rows), store.array(key)[:][rows])


def test_chunk_reader_multi_axis_chunks_and_zarr_fallback(tmp_path):
    rng = np.random.default_rng(0)
    value = rng.normal(size=(11, 5, 3)).astype(np.float32)
    # Chunked along trailing axes too (row blocks are stitched), and a codec the fast path does not take.
    fast = zarr.create_array(str(tmp_path / "a"), shape=value.shape, chunks=(4, 2, 2), dtype="float32")
    fast[:] = value
    slow = zarr.create_array(
        str(tmp_path / "b"),
        shape=value.shape,
        chunks=(4, 2, 2),
        dtype="float32",
        compressors=zarr.codecs.GzipCodec(),
    )
    slow[:] = value
    rows = np.array([10, 0, 4, 4, 7, 3])
    for arr, is_fast in ((fast, True), (slow, False)):
        reader = ChunkReader(arr, "x")
        assert reader.fast is is_fast
        np.testing.assert_array_equal(gather_rows(reader, rows), value[rows])
        assert reader.missing_chunks(11) == []
    # A missing chunk is an error on both paths, never zarr's silent fill value.
    for name in ("a", "b"):
        (tmp_path / name / "c" / "1" / "2" / "1").unlink()
        arr = zarr.open_array(str(tmp_path / name), mode="r")
        reader = ChunkReader(arr, "x")
        assert reader.missing_chunks(11) == [(1, 2, 1)]
        with pytest.raises(ChunkError, match="missing"):
            gather_rows(reader, np.array([5]))
        np.testing.assert_array_equal(gather_rows(reader, np.array([0, 9])), value[[0, 9]])
