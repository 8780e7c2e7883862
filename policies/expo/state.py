"""Checkpoints of the online learner: atomic, safetensors + JSON only (architecture.md §Training runs),
and the replay store cut back to a checkpoint (`cut_replay_store`).

    RUN/checkpoints/step-0002000/               (env steps)
        pretrained_model/   config.json + model.safetensors: the acting policy (EMA base, target critics)
        training_state/     learner.safetensors (every network, optimiser state and the temperature),
                            rng.safetensors (torch), state.json (counters, numpy RNG, curves, history)
    RUN/checkpoints/last -> step-0002000        RUN/checkpoints/best -> eval-0001500 (best evaluation)

A step directory is written under a temporary name, fsynced and renamed into place; then `last` is
swapped with an atomic rename. A kill at any moment leaves the previous checkpoint and links intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from visuomotor.datasets import EpisodeStore
from visuomotor.errors import InvalidInputError, MissingPathError
from visuomotor.policies.expo.updates import Learner
from visuomotor.rundir import RunDir, fsync_tree, pretrained_model, prune_checkpoints, training_state

STATE_JSON = "state.json"
TENSORS = "learner.safetensors"
RNG = "rng.safetensors"


def learner_tensors(learner: Learner) -> dict[str, torch.Tensor]:
    """Every tensor of the learner, flat: networks, temperature and optimiser states."""
    tensors = {
        f"{name}.{k}": v.detach().clone().contiguous()
        for name, module in learner.modules().items()
        for k, v in module.state_dict().items()
    }
    if learner.log_alpha is not None:
        tensors["log_alpha"] = learner.log_alpha.detach().clone()
    for name, opt in learner.optimizers.items():
        tensors |= {f"opt.{name}.{k}": v for k, v in opt.state_tensors().items()}
    return tensors


def load_learner_tensors(learner: Learner, tensors: dict[str, torch.Tensor]) -> None:
    """Put saved tensors back (strictly: a missing or extra tensor is an error naming it)."""
    for name, module in learner.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    if learner.log_alpha is not None:
        with torch.no_grad():
            learner.log_alpha.copy_(tensors["log_alpha"])
    for name, opt in learner.optimizers.items():
        prefix = f"opt.{name}."
        opt.load_state_tensors({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})


def save_checkpoint(run: RunDir, step: int, learner: Learner, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` atomically, point `last` at it and prune old ones; returns it."""
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    final = run.step_dir(step)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    learner.export().save_pretrained(pretrained_model(tmp))
    state_dir = training_state(tmp)
    state_dir.mkdir(parents=True)
    save_file(learner_tensors(learner), str(state_dir / TENSORS))
    save_file({"torch": torch.get_rng_state()}, str(state_dir / RNG))
    (state_dir / STATE_JSON).write_text(json.dumps(state))
    fsync_tree(tmp)
    if final.exists():  # the same step written again by a resumed run
        shutil.rmtree(final)
    os.rename(tmp, final)
    point_link(run.last, final.name)
    prune_checkpoints(run, keep)
    return final


def load_checkpoint(run: RunDir) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor]:
    """(state.json, learner tensors, torch RNG state) of the run's last checkpoint."""
    if not run.last.exists():
        raise MissingPathError(f"{run.root}: nothing to resume (no checkpoints/last)")
    state_dir = training_state(run.last.resolve())
    state = json.loads((state_dir / STATE_JSON).read_text())
    return state, load_file(str(state_dir / TENSORS)), load_file(str(state_dir / RNG))["torch"]


def save_best(run: RunDir, step: int, learner: Learner) -> None:
    """The acting policy of a new best evaluation, as `checkpoints/eval-<step>` with `best` pointing at it
    (evaluations fall between checkpoints, so the best policy gets its own directory)."""
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    final = run.checkpoints / f"eval-{step:07d}"
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    learner.export().save_pretrained(pretrained_model(tmp))
    fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    point_link(run.best, final.name)
    for old in run.checkpoints.glob("eval-*"):
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


def point_link(link: Path, target: str) -> None:
    """Atomically make `link` a relative symlink to `target`."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def cut_replay_store(path: Path, episodes: int) -> EpisodeStore:
    """The replay store at `path` holding exactly its first `episodes` episodes. A run killed between
    committing an episode and checkpointing holds more: they are dropped by copying the others into a
    new store and swapping it in (a kill during the swap is finished by the next call)."""
    old, tmp = path.with_name(f".old-{path.name}"), path.with_name(f".cut-{path.name}")
    if not path.exists() and old.exists():
        os.rename(old, path)  # killed between the two renames: the old store is still whole
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    store = EpisodeStore.open(path, mode="a")
    if store.num_episodes < episodes:
        raise InvalidInputError(
            f"{path}: holds {store.num_episodes} episodes, the checkpoint counted {episodes}"
        )
    if store.num_episodes == episodes:
        return store
    fixed = {"format_version", "fps", "env_id", "action_space", "tasks"}
    new = EpisodeStore.create(
        tmp, fps=int(store.fps), env_id=store.env_id, action_space=store.attrs.get("action_space"),
        attrs={k: v for k, v in store.attrs.items() if k not in fixed},
    )  # fmt: skip
    for e in range(episodes):
        new.append_episode(store.episode(e), task=store.task(e), meta=store.episode_meta(e))
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return EpisodeStore.open(path, mode="a")
