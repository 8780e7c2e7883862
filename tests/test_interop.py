"""Conversions between the episode store and LeRobot v3 datasets and robomimic hdf5 files
(datasets/interop/, `visuomotor dataset convert`).

LeRobot is imported once per test process (seconds); the store -> LeRobot export runs once per module
and the tests that need a LeRobot dataset work on copies of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from fixtures import episode_arrays, run_cli

from visuomotor.datasets import EpisodeStore
from visuomotor.datasets.convert import convert, export
from visuomotor.datasets.interop import lerobot_export, robomimic
from visuomotor.datasets.interop.destination import building_directory
from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError, PathExistsError

CAMERA = "observation.images.top"
LOW_DIM = ("observation.state", "action", "next.reward", "deploy.safety")
LENGTHS = [10, 12]
HW = 16


def smooth_frames(length: int, episode: int) -> np.ndarray:
    """Gradients that drift from frame to frame: what a video codec keeps well (random noise it does not)."""
    y, x = np.mgrid[0:HW, 0:HW].astype(np.float32)
    t = np.arange(length, dtype=np.float32)[:, None, None]
    red = 40 + 10 * x + 3 * t
    green = 60 + 8 * y + 20 * episode
    blue = 120 + 4 * (x + y) - 2 * t
    return np.clip(np.stack([red, green + 0 * t, blue], axis=-1), 0, 255).astype(np.uint8)


def make_source_store(path: Path) -> list[dict[str, np.ndarray]]:
    """A 2-episode store: state, action, per-frame scalars, one smooth 16x16 camera; returns the arrays."""
    store = EpisodeStore.create(
        path, fps=15, env_id="test-env-v0", action_space={"shape": [2], "names": ["dx", "grip"]}
    )
    store.update_attrs({"feature_names": {"observation.state": ["x", "y", "z", "w"]}, "cameras": ["top"]})
    written, first = [], 0
    for e, n in enumerate(LENGTHS):
        data = episode_arrays(n, episode=e, first_frame=first, camera=False)
        # float64 and int32 as well: Hugging Face's numpy formatter would turn them into float32 and int64
        data["next.reward"] = np.linspace(0, 1, n) / 3 + e
        data["deploy.safety"] = np.arange(n, dtype=np.int32) * (e + 1)
        data[CAMERA] = smooth_frames(n, e)
        store.append_episode(data, task=f"push the block {e}", meta={"seed": e, "success": e == 0})
        written.append(data)
        first += n
    return written


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".creating-{path.name}"))


# ---------------------------------------------------------------- store <-> LeRobot


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(source store, its arrays, the LeRobot dataset exported from it by the CLI)."""
    root = tmp_path_factory.mktemp("lerobot")
    written = make_source_store(root / "src.zarr")
    code, out, err = run_cli(
        [
            "dataset",
            "convert",
            str(root / "src.zarr"),
            str(root / "lr"),
            "--to",
            "lerobot",
            "--repo-id",
            "me/rt",
        ]
    )
    assert code == 0, err
    assert "2 episodes, 22 frames" in out
    return root / "src.zarr", written, root / "lr"


def test_export_opens_in_lerobot_with_same_low_dim_arrays(exported):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    _, written, lr = exported
    assert not siblings(lr)  # the hidden build directory was renamed into place
    dataset = LeRobotDataset("me/rt", root=lr, video_backend="pyav")
    assert dataset.num_episodes == 2 and dataset.num_frames == sum(LENGTHS) and dataset.fps == 15
    assert dataset.meta.video_keys == [CAMERA]
    assert dataset.features["action"]["names"] == ["dx", "grip"]
    assert dataset.features["observation.state"]["names"] == ["x", "y", "z", "w"]
    assert list(dataset.meta.tasks.index) == ["push the block 0", "push the block 1"]
    rows = dataset.hf_dataset.with_format("numpy", dtype=None)[:]
    for key in LOW_DIM:
        want = np.concatenate([ep[key] for ep in written])
        assert rows[key].dtype == want.dtype and rows[key].tobytes() == want.tobytes(), key
    frame = dataset[LENGTHS[0] + 3]  # LeRobot's own reader decodes our video
    assert frame["task"] == "push the block 1"
    assert psnr((frame[CAMERA].numpy().transpose(1, 2, 0) * 255).round(), written[1][CAMERA][3]) > 30


def test_store_lerobot_store_round_trip(exported, tmp_path):
    src, written, lr = exported
    back = tmp_path / "back.zarr"
    code, _, err = run_cli(["dataset", "convert", str(lr), str(back)])
    assert code == 0, err
    store, source = EpisodeStore.open(back), EpisodeStore.open(src)
    assert store.keys == source.keys
    np.testing.assert_array_equal(store.episode_ends, source.episode_ends)
    for key in LOW_DIM:
        assert store.dtype(key) == source.dtype(key) and store.shape(key) == source.shape(key), key
        assert store.load(key).tobytes() == source.load(key).tobytes(), key  # bit for bit
    for e in range(2):
        assert store.task(e) == source.task(e)
        assert store.episode_meta(e) == source.episode_meta(e)
        got = store.episode(e, [CAMERA])[CAMERA]
        assert got.dtype == np.uint8 and got.shape == written[e][CAMERA].shape
        assert psnr(got, written[e][CAMERA]) > 30, psnr(got, written[e][CAMERA])
    assert store.fps == 15 and store.env_id == "test-env-v0"
    assert store.attrs["action_space"] == source.attrs["action_space"]
    assert store.attrs["cameras"] == ["top"]
    assert store.attrs["converted_from"]["format"] == "lerobot"
    assert store.attrs["conversion"]["complete"] is True


def test_foreign_lerobot_dataset_keeps_names_tasks_and_shapes(exported, tmp_path):
    """Without our sidecar (a dataset LeRobot wrote): what info.json and the tasks say is kept."""
    _, written, lr = exported
    foreign = tmp_path / "foreign"
    shutil.copytree(lr, foreign)
    (foreign / lerobot_export.SIDECAR).unlink()
    store = convert(foreign, tmp_path / "s.zarr")
    assert store.shape("next.reward") == (1,)  # LeRobot's declared shape (1,)
    assert (
        store.load("next.reward")[:, 0].tobytes()
        == np.concatenate([w["next.reward"] for w in written]).tobytes()
    )
    assert store.episode_meta(1) == {"lerobot_episode_index": 1}
    assert [store.task(e) for e in range(2)] == ["push the block 0", "push the block 1"]
    assert store.attrs["feature_names"]["action"] == ["dx", "grip"]
    assert store.attrs["action_space"] == {"shape": [2], "names": ["dx", "grip"]}
    assert store.attrs["cameras"] == ["top"] and store.attrs["image_size"] == HW


def _edit_info(dataset: Path, change) -> None:
    info_path = dataset / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    change(info)
    info_path.write_text(json.dumps(info))


def test_lerobot_bad_input_is_one_clear_error(exported, tmp_path):
    _, _, lr = exported
    text = tmp_path / "text"
    shutil.copytree(lr, text)
    _edit_info(text, lambda i: i["features"].update(note={"dtype": "string", "shape": [1], "names": None}))
    code, _, err = run_cli(["dataset", "convert", str(text), str(tmp_path / "a.zarr")])
    assert code == 2 and err.startswith("error: ")
    assert str(text / "meta" / "info.json") in err and "'note'" in err and "cannot be held" in err
    assert not (tmp_path / "a.zarr").exists()

    novideo = tmp_path / "novideo"
    shutil.copytree(lr, novideo)
    mp4 = next((novideo / "videos" / CAMERA).rglob("*.mp4"))
    mp4.unlink()
    with pytest.raises(MissingPathError, match=rf"{mp4}: no such file \(camera '{CAMERA}' of episode 0\)"):
        convert(novideo, tmp_path / "b.zarr")
    assert not (tmp_path / "b.zarr").exists()

    old = tmp_path / "old"
    shutil.copytree(lr, old)
    _edit_info(old, lambda i: i.update(codebase_version="v2.1"))
    with pytest.raises(InvalidInputError, match=r"codebase_version 'v2\.1'"):
        convert(old, tmp_path / "c.zarr")


def test_existing_destinations_are_refused(exported, tmp_path):
    src, _, lr = exported
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    for argv in (
        ["dataset", "convert", str(src), str(taken), "--to", "lerobot"],
        ["dataset", "convert", str(lr), str(taken)],
    ):
        code, _, err = run_cli(argv)
        assert code == 2 and f"{taken} already exists" in err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(PathExistsError):
        export(src, lr)


def test_failed_export_leaves_no_destination(exported, tmp_path, monkeypatch):
    src, _, _ = exported
    real = lerobot_export._write_episode

    def fail_on_second(dataset, store, i, features):
        if i == 1:
            raise RuntimeError("disk full")
        real(dataset, store, i, features)

    monkeypatch.setattr(lerobot_export, "_write_episode", fail_on_second)
    dst = tmp_path / "lr"
    with pytest.raises(RuntimeError, match="disk full"):
        export(src, dst)
    assert not dst.exists() and not siblings(dst)


def test_killed_export_leftovers_are_removed(tmp_path):
    """A killed export leaves only its build directory (named after its pid); the next run removes it."""
    dst = tmp_path / "lr"
    abandoned = tmp_path / ".creating-lr.999999999"  # no such process
    (abandoned / "meta").mkdir(parents=True)
    with building_directory(dst) as tmp:
        assert not abandoned.exists()
        (tmp / "meta").mkdir(parents=True)
        assert not dst.exists()  # nothing at the destination until the build is finished
    assert (dst / "meta").is_dir() and not siblings(dst)


# ---------------------------------------------------------------- robomimic


DEMOS = {"demo_0": 9, "demo_2": 11, "demo_10": 10}  # numeric order 0, 2, 10; lexicographic 0, 10, 2


def robomimic_demo(length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs/agentview_image": rng.integers(0, 256, (length, HW, HW, 3), dtype=np.uint8),
        "obs/robot0_eye_in_hand_image": rng.integers(0, 256, (length, HW, HW, 3), dtype=np.uint8),
        "obs/robot0_eef_pos": rng.normal(size=(length, 3)),
        "obs/object": rng.normal(size=(length, 10)),
        "obs/robot0_gripper_qpos": rng.normal(size=(length, 2)),
        "obs/step": np.arange(length, dtype=np.int64),
        "actions": rng.uniform(-1, 1, (length, 7)),
        "rewards": (np.arange(length) == length - 1).astype(np.float64),
        "dones": (np.arange(length) == length - 1).astype(np.int64),
    }


def make_robomimic(path: Path, demos: dict[str, int] = DEMOS) -> dict[str, dict[str, np.ndarray]]:
    written = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        env_args = {"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}}
        data.attrs["env_args"] = json.dumps(env_args)
        for i, (name, n) in enumerate(demos.items()):
            arrays = robomimic_demo(n, i)
            for key, value in arrays.items():
                data.create_dataset(f"{name}/{key}", data=value)
            data[name].attrs["num_samples"] = n
            written[name] = arrays
    return written


STATE_KEYS = ["object", "robot0_eef_pos", "robot0_gripper_qpos", "step"]  # sorted


def test_robomimic_to_store(tmp_path):
    written = make_robomimic(tmp_path / "lift.hdf5")
    dst = tmp_path / "lift.zarr"
    code, _, err = run_cli(["dataset", "convert", str(tmp_path / "lift.hdf5"), str(dst)])
    assert code == 0, err
    store = EpisodeStore.open(dst)
    assert store.keys == [
        "action",
        "next.done",
        "next.reward",
        "observation.images.agentview",
        "observation.images.robot0_eye_in_hand",
        "observation.state",
    ]
    order = ["demo_0", "demo_2", "demo_10"]
    assert [store.episode_meta(e)["demo"] for e in range(3)] == order
    assert store.episode_lengths.tolist() == [DEMOS[d] for d in order]
    for e, name in enumerate(order):
        ep, src = store.episode(e), written[name]
        assert ep["observation.images.agentview"].tobytes() == src["obs/agentview_image"].tobytes()
        assert (
            ep["observation.images.robot0_eye_in_hand"].tobytes()
            == src["obs/robot0_eye_in_hand_image"].tobytes()
        )
        state = np.concatenate([src[f"obs/{k}"].reshape(DEMOS[name], -1) for k in STATE_KEYS], axis=1)
        np.testing.assert_array_equal(ep["observation.state"], state.astype(np.float32))
        np.testing.assert_array_equal(ep["action"], src["actions"].astype(np.float32))
        assert ep["next.reward"].tobytes() == src["rewards"].tobytes()
        assert ep["next.done"].dtype == np.int64 and ep["next.done"].tobytes() == src["dones"].tobytes()
    assert store.attrs["state_layout"] == [
        {"key": "object", "size": 10},
        {"key": "robot0_eef_pos", "size": 3},
        {"key": "robot0_gripper_qpos", "size": 2},
        {"key": "step", "size": 1},
    ]
    assert (
        store.shape("observation.state") == (16,)
        and len(store.attrs["feature_names"]["observation.state"]) == 16
    )
    assert store.attrs["cameras"] == ["agentview", "robot0_eye_in_hand"] and store.attrs["image_size"] == HW
    assert store.env_id == "robosuite/Lift" and store.fps == 20 and store.tasks == ["Lift"]
    assert store.attrs["conversion"]["complete"] is True


def _no_data(f: h5py.File) -> None:
    del f["data"]
    f.create_group("mask")


def _no_actions(f: h5py.File) -> None:
    del f["data/demo_2/actions"]


def _float_image(f: h5py.File) -> None:
    del f["data/demo_0/obs/agentview_image"]
    f["data/demo_0/obs"].create_dataset("agentview_image", data=np.zeros((9, HW, HW, 3), np.float32))


def _depth(f: h5py.File) -> None:
    f["data/demo_0/obs"].create_dataset("agentview_depth", data=np.zeros((9, HW, HW, 1), np.float32))


@pytest.mark.parametrize(
    ("damage", "error", "names"),
    [
        (_no_data, MissingKeyError, "no group 'data/'"),
        (_no_actions, MissingKeyError, "no 'actions' in 'data/demo_2'"),
        (_float_image, InvalidInputError, "'data/demo_0/obs/agentview_image' is float32"),
        (_depth, InvalidInputError, "'data/demo_0/obs/agentview_depth' is float32 (9, 16, 16, 1)"),
    ],
)
def test_robomimic_bad_input_is_one_clear_error(tmp_path, damage, error, names):
    src = tmp_path / "bad.hdf5"
    make_robomimic(src)
    with h5py.File(src, "a") as f:
        damage(f)
    dst = tmp_path / "out.zarr"
    code, _, err = run_cli(["dataset", "convert", str(src), str(dst)])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert str(src) in err and names in err
    with pytest.raises(error):
        convert(src, dst)
    assert not dst.exists() and not siblings(dst)


def test_killed_conversion_is_never_complete_and_resumes(tmp_path, monkeypatch):
    src = tmp_path / "lift.hdf5"
    make_robomimic(src)
    dst = tmp_path / "lift.zarr"
    real = robomimic._read_demo
    seen = []

    def dies_at_third(f, layout, i):
        # What a kill at this moment would leave: a store whose marker says incomplete.
        seen.append(EpisodeStore.open(dst).attrs["conversion"]["complete"])
        if i == 2:
            raise KeyboardInterrupt  # stands in for the kill; nothing after this point runs
        return real(f, layout, i)

    monkeypatch.setattr(robomimic, "_read_demo", dies_at_third)
    assert run_cli(["dataset", "convert", str(src), str(dst)])[0] == 130
    assert seen == [False, False, False]
    partial = EpisodeStore.open(dst)
    assert partial.num_episodes == 2 and partial.attrs["conversion"]["complete"] is False
    code, out, _ = run_cli(["dataset", "info", str(dst)])
    assert code == 0 and "conversion INCOMPLETE" in out
    code, _, err = run_cli(
        ["train", "--policy", "diffusion", "--data", str(dst), "--out", str(tmp_path / "run")]
    )
    assert code == 2 and "did not finish (2 of 3 episodes)" in err  # training refuses the partial store

    other = tmp_path / "other.hdf5"
    make_robomimic(other, {"demo_0": 5})
    with pytest.raises(PathExistsError, match="unfinished conversion of"):
        convert(other, dst)  # a different source never resumes it

    monkeypatch.setattr(robomimic, "_read_demo", real)
    code, out, err = run_cli(["dataset", "convert", str(src), str(dst)])
    assert code == 0, err
    resumed, fresh = EpisodeStore.open(dst), convert(src, tmp_path / "fresh.zarr")
    assert resumed.attrs["conversion"]["complete"] is True and resumed.num_episodes == 3
    np.testing.assert_array_equal(resumed.episode_ends, fresh.episode_ends)
    for key in fresh.keys:
        assert resumed.load(key).tobytes() == fresh.load(key).tobytes(), key
    code, _, err = run_cli(["dataset", "convert", str(src), str(dst)])
    assert code == 2 and "already exists" in err  # complete: nothing to resume


def test_conversion_options_are_checked(tmp_path):
    src = tmp_path / "lift.hdf5"
    make_robomimic(src, {"demo_0": 4})
    code, _, err = run_cli(["dataset", "convert", str(src), str(tmp_path / "a"), "--rename", "a=b"])
    assert code == 2 and "--rename and --env-id apply to zarr stores" in err
    code, _, err = run_cli(["dataset", "convert", str(src), str(tmp_path / "a"), "--repo-id", "me/x"])
    assert code == 2 and "--to lerobot" in err
    assert convert(src, tmp_path / "b.zarr", fps=50).fps == 50
    assert not (tmp_path / "a").exists()


def test_the_loader_benchmark_gives_lerobot_the_windows_it_gives_ours(exported):
    """`bench dataload` times LeRobot's DataLoader on the windows ours produce: state and camera at t-1, t and
    16 actions from t-1 (held at the episode's ends, LeRobot's padding)."""
    from visuomotor.eval.bench.lerobot_dataload import lerobot_loader

    _src, written, dst = exported
    loader = lerobot_loader(dst, 15, CAMERA, workers=0)
    dataset = loader.dataset
    t = 4  # frame 4 of episode 0: every window step inside the episode for the observations
    item = dataset[t]
    assert tuple(item[CAMERA].shape) == (2, 3, HW, HW)
    np.testing.assert_allclose(
        item["observation.state"].numpy(), written[0]["observation.state"][t - 1 : t + 1]
    )
    actions = written[0]["action"]
    expected = np.stack([actions[min(max(k, 0), len(actions) - 1)] for k in range(t - 1, t + 15)])
    np.testing.assert_allclose(item["action"].numpy(), expected)
    assert next(iter(loader))["action"].shape == (64 if len(dataset) >= 64 else len(dataset), 16, 2)
