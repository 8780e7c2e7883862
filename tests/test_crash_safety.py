"""A writer killed with SIGKILL leaves a store that opens with every committed episode intact.

The child process below appends deterministic episodes. In the systematic test it SIGKILLs itself right
after the N-th write operation (array or group creation, array resize, chunk write, attribute write,
the creation's rename) of episode K, for every N, so each intermediate state of an append is visited.
The random tests kill it from outside at arbitrary moments, including in the middle of a file write.
Creation and the first append are also stopped after every write operation in this process (an
exception raised right after the operation leaves the disk as a kill there would: nothing of ours runs
on the way out), which is fast enough to visit all of their steps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import crash_episode

from visuomotor.datasets import EpisodeStore

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import zarr
    from zarr.core.attributes import Attributes
    from visuomotor.datasets import EpisodeStore

    path = sys.argv[1]
    n_episodes, kill_episode, kill_after = (int(a) for a in sys.argv[2:5])
    state = {"episode": -1, "ops": 0}

    def counted(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            if state["episode"] == kill_episode:
                state["ops"] += 1
                if state["ops"] == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapper

    zarr.Array.__setitem__ = counted(zarr.Array.__setitem__)
    zarr.Array.resize = counted(zarr.Array.resize)
    Attributes.__setitem__ = counted(Attributes.__setitem__)
    zarr.Group.create_group = counted(zarr.Group.create_group)
    zarr.Group.create_array = counted(zarr.Group.create_array)
    os.rename = counted(os.rename)  # the store's creation commits with a rename

    sys.path.insert(0, os.environ["TESTS_DIR"])
    from fixtures import crash_episode as episode

    if os.path.exists(path):
        store = EpisodeStore.open(path, mode="a")
    else:
        store = EpisodeStore.create(path, fps=10)
        print(f"created, ops {state['ops']}", file=sys.stderr, flush=True)
    for i in range(store.num_episodes, n_episodes):
        state["episode"] = i
        store.append_episode(episode(i), task=f"task {i}", meta={"seed": i})
        print(f"committed {i}", flush=True)
    print(f"ops {state['ops']}", flush=True)
    """
)


expected_episode = crash_episode
CHILD_ENV = {**os.environ, "TESTS_DIR": str(Path(__file__).resolve().parent)}


def run_child(tmp_path: Path, store: Path, n: int, kill_episode: int = -1, kill_after: int = 0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(store), str(n), str(kill_episode), str(kill_after)],
        capture_output=True,
        text=True,
        timeout=120,
        env=CHILD_ENV,
    )


def assert_committed_intact(store_path: Path, n: int) -> None:
    store = EpisodeStore.open(store_path)
    assert store.num_episodes == n
    for i in range(n):
        got = store.episode(i)
        for key, want in expected_episode(i).items():
            assert got[key].dtype == want.dtype
            assert got[key].tobytes() == want.tobytes(), f"episode {i} key {key} changed"
        assert store.task(i) == f"task {i}"
        assert store.episode_meta(i) == {"seed": i}


def image_chunk_bytes(store_path: Path, frames: range) -> list[bytes]:
    return [(store_path / f"data/observation.images.cam/c/{t}/0/0/0").read_bytes() for t in frames]


def test_ops_per_episode_is_what_the_systematic_test_covers(tmp_path):
    """Counts the write operations of one append, so the parametrisation below visits all of them."""
    result = run_child(tmp_path, tmp_path / "s.zarr", 3, kill_episode=2, kill_after=10_000)
    assert result.returncode == 0, result.stderr
    assert "ops 10" in result.stdout  # 3 resizes + 3 writes + 2 attribute writes + ends resize + write


@pytest.mark.parametrize("kill_after", range(1, 11))
def test_sigkill_at_every_write_step_keeps_committed_episodes(tmp_path, kill_after):
    store = tmp_path / "s.zarr"
    reference = tmp_path / "ref.zarr"
    assert run_child(tmp_path, reference, 3).returncode == 0
    result = run_child(tmp_path, store, 3, kill_episode=2, kill_after=kill_after)
    assert result.returncode == -signal.SIGKILL
    committed = 2 if kill_after < 10 else 3  # the 10th op writes the episode_ends entry: the commit
    assert_committed_intact(store, committed)
    n_frames = sum(5 + i for i in range(committed))
    assert image_chunk_bytes(store, range(n_frames)) == image_chunk_bytes(reference, range(n_frames))
    # A new writer trims the leftovers of the killed one and carries on.
    result = run_child(tmp_path, store, 4)
    assert result.returncode == 0, result.stderr
    assert_committed_intact(store, 4)
    assert not list(store.rglob("*.partial"))


def test_sigkill_at_random_moments(tmp_path):
    store = tmp_path / "s.zarr"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = np.random.default_rng(0)
    target = 40
    for _ in range(6):
        before = EpisodeStore.open(store).num_episodes if store.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, str(script), str(store), str(target), "-1", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        # Wait for the first commit of this run, then kill at a random moment after it.
        line = proc.stdout.readline()
        assert line.startswith("committed"), proc.stderr.read()
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = EpisodeStore.open(store).num_episodes
        assert after > before
        assert_committed_intact(store, after)
        if after == target:
            break


class _Stop(BaseException):
    """Raised right after the N-th write operation; BaseException, so nothing on the way out catches it."""


@contextlib.contextmanager
def stop_after(n: int):
    """Abort the calling code right after its n-th write operation (the operations the child counts)."""
    import zarr
    from zarr.core.attributes import Attributes

    count = [0]
    targets = [
        (zarr.Array, "__setitem__"),
        (zarr.Array, "resize"),
        (Attributes, "__setitem__"),
        (zarr.Group, "create_group"),
        (zarr.Group, "create_array"),
        (os, "rename"),
    ]
    originals = [getattr(owner, name) for owner, name in targets]

    def counted(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            count[0] += 1
            if count[0] == n:
                raise _Stop
            return out

        return wrapper

    for (owner, name), fn in zip(targets, originals, strict=True):
        setattr(owner, name, counted(fn))
    try:
        yield count
    finally:
        for (owner, name), fn in zip(targets, originals, strict=True):
            setattr(owner, name, fn)


def write_episodes(store_path: Path, n: int) -> None:
    store = (
        EpisodeStore.open(store_path, mode="a")
        if store_path.exists()
        else EpisodeStore.create(store_path, fps=10)
    )
    for i in range(store.num_episodes, n):
        store.append_episode(crash_episode(i), task=f"task {i}", meta={"seed": i})


def test_creation_and_first_append_write_operations_are_counted(tmp_path):
    with stop_after(0) as count:
        EpisodeStore.create(tmp_path / "s.zarr", fps=10)
    assert count[0] == CREATE_OPS
    with stop_after(0) as count:
        write_episodes(tmp_path / "s.zarr", 1)
    assert count[0] == FIRST_APPEND_OPS


CREATE_OPS, FIRST_APPEND_OPS = 10, 13


@pytest.mark.parametrize("stop", range(1, CREATE_OPS + 1))
def test_a_creation_stopped_at_any_step_leaves_no_store_or_an_empty_one(tmp_path, stop):
    store = tmp_path / "s.zarr"
    with pytest.raises(_Stop), stop_after(stop):
        EpisodeStore.create(store, fps=10)
    if stop < CREATE_OPS:  # before the rename nothing is at the store's path
        assert not store.exists()
    else:
        assert EpisodeStore.open(store).num_episodes == 0
    write_episodes(store, 3)  # the next writer creates (or opens) it and carries on
    assert_committed_intact(store, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # leftovers removed


@pytest.mark.parametrize("stop", range(1, FIRST_APPEND_OPS + 1))
def test_a_first_append_stopped_at_any_step_keeps_a_store_the_next_writer_appends_to(tmp_path, stop):
    store = tmp_path / "s.zarr"
    EpisodeStore.create(store, fps=10)
    with pytest.raises(_Stop), stop_after(stop):
        write_episodes(store, 1)
    committed = 1 if stop == FIRST_APPEND_OPS else 0  # the last operation writes episode_ends: the commit
    assert_committed_intact(store, committed)
    write_episodes(store, 3)
    assert_committed_intact(store, 3)


def test_sigkill_during_the_first_episodes_of_a_new_store(tmp_path):
    """Real kills from outside, as soon as the child has started writing a new store."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    for k, delay in enumerate((0.0, 0.02, 0.05)):
        store = tmp_path / f"s{k}.zarr"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(store), "3", "-1", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=CHILD_ENV,
        )
        line = proc.stderr.readline()  # "created, ops N": the store exists, the first append begins
        assert line.startswith("created"), line + proc.stderr.read()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        after = EpisodeStore.open(store).num_episodes
        assert_committed_intact(store, after)
        assert run_child(tmp_path, store, 3).returncode == 0
        assert_committed_intact(store, 3)
