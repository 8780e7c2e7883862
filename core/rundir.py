"""The layout of a training run's directory, in one place (architecture.md §Training runs).

RUN/
  run.json  summary.json  metrics.json  loss.png  success.png  tensorboard/
  checkpoints/
    step-0000500/
      pretrained_model/    config.json + model.safetensors: what evaluation loads
      training_state/      raw weights, optimiser, RNG, state.json: what --resume loads
    last -> step-0000500
    best -> step-0000300
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from visuomotor.errors import MissingPathError

PRETRAINED_MODEL = "pretrained_model"
TRAINING_STATE = "training_state"


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory; nothing here touches the disk."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    def step_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}"


def pretrained_model(step_dir: Path) -> Path:
    """The loadable checkpoint inside a step directory."""
    return step_dir / PRETRAINED_MODEL


def training_state(step_dir: Path) -> Path:
    """The resume state inside a step directory."""
    return step_dir / TRAINING_STATE


def resolve_checkpoint(path: Path) -> Path:
    """A loadable checkpoint from a checkpoint, a step directory, or a run directory (best, else last)."""
    if not path.exists():
        raise MissingPathError(f"{path}: not found (no such checkpoint or run directory)")
    run = RunDir(path)
    for candidate in (path, pretrained_model(path), pretrained_model(run.best), pretrained_model(run.last)):
        if (candidate / "config.json").exists():
            return candidate
    raise MissingPathError(
        f"{path}: not a checkpoint (no config.json) nor a run directory (no checkpoints/last or best)"
    )


def prune_checkpoints(run: RunDir, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (never the ones `last` or `best` name), and
    temporary folders writers left."""
    protected = {os.readlink(p) for p in (run.last, run.best) if p.is_symlink()}
    steps = sorted(p for p in run.checkpoints.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
    for stale in run.checkpoints.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def fsync_tree(path: Path) -> None:
    """Flush every file below `path` to disk (before a checkpoint folder is renamed into place)."""
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
