"""Training checkpoints: written atomically, resumable exactly, no pickle.

    RUN/checkpoints/step-000500/
        pretrained_model/        config.json + model.safetensors (EMA weights when EMA is on)
        training_state/          model.safetensors (raw weights), optimizer.safetensors, state.json
    RUN/checkpoints/last -> step-000500      (symlinks, swapped with an atomic rename)
    RUN/checkpoints/best -> step-000300

A step directory is written under a temporary name and renamed into place, then the `last` link is
replaced with `os.replace`; a crash at any moment leaves the previous checkpoint and links intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from visuomotor.errors import MissingPathError
from visuomotor.rundir import RunDir, fsync_tree, pretrained_model, prune_checkpoints, training_state

STATE_JSON = "state.json"


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_checkpoint(
    run_dir: Path,
    step: int,
    policy: nn.Module,
    eval_policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict[str, Any],
    keep: int = 2,
    rng_states: list[torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint `step` atomically and point `last` at it; returns its directory. `rng_states`
    holds every rank's torch RNG state (default: this process's)."""
    run = RunDir(run_dir)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    final = run.step_dir(step)
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    eval_policy.save_pretrained(pretrained_model(tmp))
    state_dir = training_state(tmp)
    state_dir.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in policy.state_dict().items()}, str(state_dir / "model.safetensors")
    )
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(state_dir / "optimizer.safetensors"))
    states = rng_states if rng_states is not None else [torch.get_rng_state()]
    save_file({f"torch.rank{r}": t for r, t in enumerate(states)}, str(state_dir / "rng.safetensors"))
    state = {
        "step": step,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        **extra,
    }
    (state_dir / STATE_JSON).write_text(json.dumps(state, default=_json_default))
    fsync_tree(tmp)
    if final.exists():  # a re-run of the same step after a resume: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    point_link(run.last, final.name)
    prune_checkpoints(run, keep)
    return final


def update_training_state(ckpt_dir: Path, updates: dict[str, Any]) -> None:
    """Merge `updates` into a written checkpoint's state.json, atomically (temp file + rename)."""
    path = training_state(ckpt_dir) / STATE_JSON
    state = json.loads(path.read_text())
    state.update(updates)
    tmp = path.with_name(f".{STATE_JSON}.{os.getpid()}")
    tmp.write_text(json.dumps(state, default=_json_default))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def point_link(link: Path, target: str) -> None:
    """Atomically make `link` a symlink to `target` (relative)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer | np.floating):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def load_training_state(ckpt_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(state.json contents, raw model weights, optimizer state dict) of a step directory; the state's
    "torch_rng" is the list of per-rank RNG states."""
    state_dir = training_state(ckpt_dir)
    if not (state_dir / STATE_JSON).exists():
        raise MissingPathError(f"{ckpt_dir}: no training state to resume from")
    state = json.loads((state_dir / STATE_JSON).read_text())
    weights = load_file(str(state_dir / "model.safetensors"))
    optimizer = _unflatten_optimizer(load_file(str(state_dir / "optimizer.safetensors")), state["optimizer"])
    state["torch_rng"] = _rank_states(load_file(str(state_dir / "rng.safetensors")))
    return state, weights, optimizer


def _rank_states(rng: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The per-rank RNG states of rng.safetensors, in rank order (runs before per-rank states saved one
    state, "torch")."""
    if "torch" in rng:
        return [rng["torch"]]
    return [rng[f"torch.rank{r}"] for r in range(len(rng))]
