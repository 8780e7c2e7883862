"""`visuomotor bench fuzz`: random damage to an episode store and to a checkpoint, and what a user then
meets (architecture.md §Store, §Training runs and checkpoints).

Each case mutates one file of a small store (3 episodes: a state, an 8x8 camera, actions; chunk files,
`zarr.json` metadata, the commit record `meta/episode_ends`) or of a small checkpoint (`config.json`,
`model.safetensors`): bytes flipped, the file truncated, cut to nothing, deleted, garbage appended, or a
JSON value replaced by another of a random type. Then it does what a user does: the store is opened,
verified (`dataset verify`) and every committed episode read; the checkpoint is inspected and loaded.
The mutated file is restored after each case.

Every case ends in one of:
    detected     one of the project's own errors (a `UserError`), or `verify` reports a problem
    harmless     everything opens and reads back identical to the original (e.g. a JSON key reordered)
    valid_edit   a checkpoint whose config.json now holds another valid setting: it loads as edited (the
                 file is JSON a user may edit; only the weights carry a checksum)
    silent_wrong no error and no problem reported, yet some data, episode count or weight differs
    crash        any other exception (its type and message are kept, a few of each)
    hang         no answer within 10 s
The claims to check: crash, hang and silent_wrong are 0.
"""

from __future__ import annotations

import json
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HANG_S = 10
OUTCOMES = ("detected", "harmless", "valid_edit", "silent_wrong", "crash", "hang")


class _Hang(Exception):
    pass


# ---------------------------------------------------------------------------------------- fixtures
def _make_store(path: Path) -> dict[str, Any]:
    from visuomotor.datasets import EpisodeStore

    store = EpisodeStore.create(path, fps=10, env_id="fuzz/env", action_space={"shape": [2]})
    rng = np.random.default_rng(0)
    for e, n in enumerate((9, 12, 7)):
        store.append_episode(
            {
                "observation.state": rng.normal(size=(n, 4)).astype(np.float32),
                "observation.images.top": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                "action": rng.normal(size=(n, 2)).astype(np.float32),
            },
            task=f"task {e % 2}",
        )
    return _store_snapshot(EpisodeStore.open(path))


def _store_snapshot(store: Any) -> dict[str, Any]:
    """Everything a reader gets from a store."""
    episodes = [{k: v.tobytes() for k, v in store.episode(i).items()} for i in range(store.num_episodes)]
    return {"num_episodes": store.num_episodes, "tasks": store.tasks, "episodes": episodes}


def _make_checkpoint(path: Path) -> dict[str, Any]:
    from visuomotor.policies import get_policy_entry, make_config

    config = make_config(
        "diffusion", "cpu", input_shapes={"observation.state": [4]}, action_dim=2, down_dims=(16, 32),
        step_embed_dim=8, horizon=8, n_action_steps=4,
    )  # fmt: skip
    get_policy_entry("diffusion").load()[0](config).save_pretrained(path)
    return _checkpoint_snapshot(path)


def _checkpoint_snapshot(path: Path) -> dict[str, Any]:
    from visuomotor.configs import to_dict
    from visuomotor.policies import load_policy

    policy = load_policy(path)
    weights = {k: v.numpy().tobytes() for k, v in policy.state_dict().items()}
    return {"config": json.dumps(to_dict(policy.config), sort_keys=True), "weights": weights}


# ---------------------------------------------------------------------------------------- mutations
JUNK: list[Any] = [None, True, -1, 0, 2**40, 1e300, -0.5, "", "x", [], [1, "a"], {}, {"a": 1}]


def _mutate_json(text: str, rng: random.Random) -> str:
    """One value somewhere in the JSON document replaced (or one key dropped)."""
    doc = json.loads(text)
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            paths.append((node, key))
            walk(value)

    walk(doc)
    if not paths:
        return json.dumps(rng.choice(JUNK))
    parent, key = rng.choice(paths)
    if isinstance(parent, dict) and rng.random() < 0.25:
        del parent[key]
    else:
        parent[key] = rng.choice(JUNK)
    return json.dumps(doc)


def _mutate_bytes(data: bytes, rng: random.Random, is_json: bool) -> bytes | None:
    """The file's new bytes (None: delete it)."""
    kind = rng.randrange(6 if is_json else 5)
    if kind == 0 and data:
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1 and data:
        return data[: rng.randrange(len(data))]
    if kind == 2:
        return b""
    if kind == 3:
        return None
    if kind == 4:
        return data + rng.randbytes(rng.randrange(1, 64))
    try:
        return _mutate_json(data.decode(), rng).encode()
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data[::-1]


# ---------------------------------------------------------------------------------------- one case
def _store_case(path: Path, original: dict[str, Any]) -> str:
    from visuomotor.datasets import EpisodeStore
    from visuomotor.datasets.verify import verify_store

    store = EpisodeStore.open(path)
    if verify_store(store):
        return "detected"
    return "harmless" if _store_snapshot(store) == original else "silent_wrong"


def _checkpoint_case(path: Path, original: dict[str, Any]) -> str:
    from visuomotor.policies import inspect_checkpoint

    inspect_checkpoint(path)
    now = _checkpoint_snapshot(path)
    if now["weights"] != original["weights"]:
        return "silent_wrong"
    return "harmless" if now["config"] == original["config"] else "valid_edit"


def _run_case(check: Callable[[], str]) -> tuple[str, str | None]:
    from visuomotor.errors import UserError

    def alarm(_signum: int, _frame: Any) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        return check(), None
    except _Hang:
        return "hang", None
    except UserError:
        return "detected", None
    except Exception as exc:  # the benchmark's subject: anything else is a defect to report
        return "crash", f"{type(exc).__name__} at {_project_frame(exc)}: {str(exc)[:120]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _project_frame(exc: BaseException) -> str:
    """The innermost frame of visuomotor's own code in the traceback: where the error escaped from."""
    import traceback

    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if ".venv" not in f.filename and "site-packages" not in f.filename
    ]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _fuzz(root: Path, cases: int, rng: random.Random, case: Callable[[Path, Any], str], original: Any) -> dict[str, Any]:  # fmt: skip
    files = sorted(p for p in root.rglob("*") if p.is_file())
    counts: Counter[str] = Counter()
    by_file: dict[str, Counter[str]] = {}
    crashes: dict[str, int] = {}
    silent: list[str] = []
    for _ in range(cases):
        target = rng.choice(files)
        data = target.read_bytes()
        new = _mutate_bytes(data, rng, target.suffix == ".json")
        if new is None:
            target.unlink()
        else:
            target.write_bytes(new)
        outcome, crash = _run_case(lambda: case(root, original))
        target.write_bytes(data)  # restore
        counts[outcome] += 1
        kind = target.relative_to(root).parts[0] if target.parent != root else target.name
        if outcome == "silent_wrong" and len(silent) < 20:
            silent.append(
                f"{target.relative_to(root)}: {'deleted' if new is None else f'{len(data)} -> {len(new)} bytes'}"
            )
        by_file.setdefault(kind, Counter())[outcome] += 1
        if crash is not None and len(crashes) < 20:
            crashes[crash] = crashes.get(crash, 0) + 1
    return {
        "cases": cases,
        "files": len(files),
        "outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
        "by_file": {k: dict(v) for k, v in sorted(by_file.items())},
        "crash_examples": crashes,
        "silent_wrong_examples": silent,
    }


def run_benchmark(json_path: str | None, quick: bool = False) -> dict[str, Any]:
    import logging

    logging.disable(logging.WARNING)  # a damaged store is expected to be reported, not logged per case
    store_cases, checkpoint_cases = (300, 100) if quick else (70_000, 30_000)
    out: dict[str, Any] = {"benchmark": "fuzz", "date": time.strftime("%Y-%m-%d"), "quick": quick}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench_fuzz_") as tmp:
        store_path, ckpt_path = Path(tmp) / "s.zarr", Path(tmp) / "ckpt"
        t0 = time.perf_counter()
        out["store"] = _fuzz(store_path, store_cases, rng, _store_case, _make_store(store_path))
        out["store"]["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out["checkpoint"] = _fuzz(
            ckpt_path, checkpoint_cases, rng, _checkpoint_case, _make_checkpoint(ckpt_path)
        )
        out["checkpoint"]["seconds"] = time.perf_counter() - t0
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
