"""robomimic hdf5 datasets -> Source, for `visuomotor dataset convert demo.hdf5 STORE`
(architecture.md §Interop).

    data/                    attrs["env_args"]: JSON with env_name, type, env_kwargs (control_freq)
      demo_<n>/obs/<key>     (T, ...) one array per observation key
      demo_<n>/actions       (T, action_dim)
      demo_<n>/rewards, dones  (T,), optional

Mapping into the store (architecture.md §Conventions):
  obs `<name>_image`, uint8 (T, H, W, 3)  -> observation.images.<name>
  every other obs key, (T,) or (T, d)     -> concatenated in sorted key order into observation.state
                                             (float32); order and sizes in attrs["state_layout"]
  actions                                 -> action (float32)
  rewards, dones                          -> next.reward, next.done (LeRobot's names), dtype kept
Demos are taken in numeric order (demo_2 before demo_10). `states` (simulator states for replay),
`next_obs` (a shifted copy of obs) and the `mask/` splits are not converted. robomimic records no
instruction text, so each episode's task is the env name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.datasets.interop.source import Episode, Source
from visuomotor.errors import InvalidInputError, MissingKeyError
from visuomotor.keys import ACTION, STATE, camera_of, image_key

log = logging.getLogger(__name__)

DEMO = re.compile(r"demo_(\d+)")
IMAGE_SUFFIX = "_image"
EXTRAS = {"rewards": "next.reward", "dones": "next.done"}
DEFAULT_FPS = 20  # robosuite's default control_freq, for files whose env_args do not say


@dataclass(frozen=True)
class Layout:
    """What every demo of the file holds, checked before anything is written."""

    demos: list[str]
    images: dict[str, str]  # obs key -> store key
    state: list[tuple[str, int]]  # obs key -> its width in observation.state, in concatenation order
    extras: dict[str, str]  # demo dataset -> store key
    env_args: dict[str, Any]


@contextmanager
def open_robomimic(path: Path, fps: int | None = None) -> Iterator[Source]:
    """The robomimic file at `path` as a Source (valid while the block runs)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot open as an HDF5 file: {exc}") from exc
    with f:
        layout = inspect_file(path, f)
        yield Source(
            path=path,
            format="robomimic",
            num_episodes=len(layout.demos),
            fps=fps or _fps(layout.env_args),
            read=lambda i: _read_demo(f, layout, i),
            env_id=_env_id(layout.env_args),
            action_space={"shape": [int(f["data"][layout.demos[0]]["actions"].shape[1])]},
            attrs=_attrs(path, f, layout),
        )


def inspect_file(path: Path, f: Any) -> Layout:
    """Check the file's structure (shapes and dtypes only: no data is read) and say what goes where."""
    if "data" not in f:
        raise MissingKeyError(f"{path}: no group 'data/': not a robomimic dataset")
    data = f["data"]
    demos = sorted((k for k in data if DEMO.fullmatch(k)), key=lambda k: int(k.split("_")[1]))
    others = sorted(set(data) - set(demos))
    if others:
        log.warning("%s: ignoring %s in 'data/' (not demo_<n>)", path, others)
    if not demos:
        raise InvalidInputError(f"{path}: 'data/' holds no demo_<n> groups")
    first = _demo_arrays(path, data, demos[0])
    images, state = _split_obs(path, demos[0], first)
    extras = {name: key for name, key in EXTRAS.items() if all(name in data[d] for d in demos)}
    for demo in demos[1:]:
        _check_same(path, demo, demos[0], _demo_arrays(path, data, demo), first)
    return Layout(demos, images, state, extras, _env_args(path, data))


def _demo_arrays(path: Path, data: Any, demo: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{obs key or 'actions'/'rewards'/'dones': (shape, dtype)} of one demo, lengths checked."""
    group = data[demo]
    for name in ("obs", "actions"):
        if name not in group:
            raise MissingKeyError(f"{path}: no '{name}' in 'data/{demo}'")
    found = {"actions": (group["actions"].shape, group["actions"].dtype)}
    found |= {name: (group[name].shape, group[name].dtype) for name in EXTRAS if name in group}
    obs = {k: (v.shape, v.dtype) for k, v in group["obs"].items()}
    if not obs:
        raise InvalidInputError(f"{path}: 'data/{demo}/obs' holds no observations")
    if len(found["actions"][0]) != 2 or found["actions"][0][0] == 0:
        raise InvalidInputError(
            f"{path}: 'data/{demo}/actions' must be (T, action_dim) with T > 0, got {found['actions'][0]}"
        )
    length = found["actions"][0][0]
    for name, (shape, _) in {**found, **{f"obs/{k}": v for k, v in obs.items()}}.items():
        if not shape or shape[0] != length:
            raise InvalidInputError(
                f"{path}: 'data/{demo}/{name}' has shape {shape}, expected {length} steps like 'actions'"
            )
    return found | {f"obs/{k}": v for k, v in obs.items()}


def _split_obs(
    path: Path, demo: str, arrays: dict[str, tuple[tuple[int, ...], np.dtype]]
) -> tuple[dict[str, str], list[tuple[str, int]]]:
    images, state = {}, []
    for name in sorted(k for k in arrays if k.startswith("obs/")):
        key, (shape, dtype) = name[4:], arrays[name]
        where = f"{path}: 'data/{demo}/{name}'"
        if key.endswith(IMAGE_SUFFIX):
            if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
                raise InvalidInputError(f"{where} is {dtype} {shape}; images must be uint8 (T, H, W, 3)")
            images[key] = image_key(key[: -len(IMAGE_SUFFIX)])
        elif len(shape) in (1, 2) and np.dtype(dtype).kind in "biuf":
            state.append((key, 1 if len(shape) == 1 else int(shape[1])))
        else:
            raise InvalidInputError(
                f"{where} is {dtype} {shape}: the store holds images named <camera>{IMAGE_SUFFIX}, "
                "uint8 (T, H, W, 3), and numeric low-dim observations (T,) or (T, d)"
            )
    return images, state


def _check_same(path: Path, demo: str, first: str, arrays: dict, want: dict) -> None:
    """Every demo must hold the keys and frame shapes of the first (the store's arrays are shared)."""
    if set(arrays) != set(want):
        missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want))
        raise InvalidInputError(
            f"{path}: 'data/{demo}' does not hold the arrays of 'data/{first}': "
            f"missing {missing}, unexpected {extra}"
        )
    for name, (shape, dtype) in arrays.items():
        if shape[1:] != want[name][0][1:] or np.dtype(dtype).kind != np.dtype(want[name][1]).kind:
            raise InvalidInputError(
                f"{path}: 'data/{demo}/{name}' is {dtype} with frames {shape[1:]}, but "
                f"'data/{first}/{name}' is {want[name][1]} with frames {want[name][0][1:]}"
            )


def _env_args(path: Path, data: Any) -> dict[str, Any]:
    raw = data.attrs.get("env_args")
    if raw is None:
        log.warning("%s: 'data' has no attribute 'env_args'; env id and fps unknown", path)
        return {}
    try:
        env_args = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError as exc:
        raise InvalidInputError(f"{path}: attribute 'env_args' of 'data' is not JSON: {exc}") from exc
    if not isinstance(env_args, dict):
        raise InvalidInputError(f"{path}: attribute 'env_args' of 'data' is not a JSON object")
    return env_args


def _env_id(env_args: dict[str, Any]) -> str:
    name = str(env_args.get("env_name", ""))
    # robomimic's EnvType 1 is robosuite; our env registry names those envs robosuite/<env_name>.
    return f"robosuite/{name}" if name and env_args.get("type", 1) == 1 else name


def _fps(env_args: dict[str, Any]) -> int:
    freq = (env_args.get("env_kwargs") or {}).get("control_freq")
    if isinstance(freq, int | float) and freq > 0:
        return round(freq)
    log.warning("env_args gives no control_freq; assuming %d fps (pass --fps to set it)", DEFAULT_FPS)
    return DEFAULT_FPS


def _attrs(path: Path, f: Any, layout: Layout) -> dict[str, Any]:
    demo = f["data"][layout.demos[0]]
    sizes = {demo["obs"][k].shape[1:3] for k in layout.images}
    attrs: dict[str, Any] = {
        "converted_from": {"path": str(path.resolve()), "format": "robomimic"},
        "robomimic": {"env_args": layout.env_args},
        "cameras": [camera_of(k) for k in layout.images.values()],
        "state_layout": [{"key": k, "size": n} for k, n in layout.state],
        "feature_names": {STATE: [f"{k}.{j}" if n > 1 else k for k, n in layout.state for j in range(n)]},
    }
    if len(sizes) == 1 and len(set(next(iter(sizes)))) == 1:  # square frames of one size
        attrs["image_size"] = int(next(iter(sizes))[0])
    return attrs


def _read_demo(f: Any, layout: Layout, i: int) -> Episode:
    """Demo number `i` (in numeric order) as a store episode."""
    name = layout.demos[i]
    group = f["data"][name]
    obs = group["obs"]
    data = {key: obs[k][()] for k, key in layout.images.items()}
    if layout.state:
        length = group["actions"].shape[0]
        parts = [np.asarray(obs[k][()], dtype=np.float32).reshape(length, n) for k, n in layout.state]
        data[STATE] = np.concatenate(parts, axis=1)
    data[ACTION] = np.asarray(group["actions"][()], dtype=np.float32)
    data |= {key: group[name_][()] for name_, key in layout.extras.items()}
    return Episode(data, task=str(layout.env_args.get("env_name", "")), meta={"demo": name})
