"""Policies and their explicit registry: a dict of name -> classes, no naming magic (architecture.md
§Layout)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError, MissingPathError
from visuomotor.policies.common.saved import CheckpointInfo, inspect_checkpoint
from visuomotor.rundir import resolve_checkpoint

__all__ = [
    "REGISTRY",
    "CheckpointInfo",
    "PolicyEntry",
    "get_policy_entry",
    "inspect_checkpoint",
    "load_policy",
    "make_config",
    "resolve_checkpoint",
]


@dataclass(frozen=True)
class PolicyEntry:
    module: str
    policy_class: str
    config_class: str
    needs_cameras: bool = False
    """A policy that cannot run from low-dim state alone (PAD predicts frames)."""
    low_dim_by_default: bool = False
    """A new run reads low-dim state only unless given cameras (EXPO: its online learner reads no images,
    so the BC checkpoint it starts from must not either), the store's environment state when it has one;
    others see every camera of the store."""

    def load(self) -> tuple[type, type, dict[str, dict[str, Any]]]:
        """(Policy class, config class, presets) — imported on first use, so the CLI starts fast."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.policy_class), getattr(mod, self.config_class), mod.PRESETS

    def config_class_and_presets(self) -> tuple[type, dict[str, dict[str, Any]]]:
        """(config class, presets) without importing the policy class (and torch with it)."""
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config_class), mod.PRESETS


REGISTRY: dict[str, PolicyEntry] = {
    "diffusion": PolicyEntry("visuomotor.policies.diffusion", "DiffusionPolicy", "DiffusionConfig"),
    "carp": PolicyEntry("visuomotor.policies.carp", "CarpPolicy", "CarpConfig"),
    "pad": PolicyEntry("visuomotor.policies.pad", "PadPolicy", "PadConfig", needs_cameras=True),
    "expo": PolicyEntry("visuomotor.policies.expo", "ExpoPolicy", "ExpoConfig", low_dim_by_default=True),
}


def get_policy_entry(name: str) -> PolicyEntry:
    if name not in REGISTRY:
        raise InvalidInputError(f"unknown policy {name!r}; registered policies: {sorted(REGISTRY)}")
    return REGISTRY[name]


def make_config(name: str, preset: str = "cpu", **fields: Any):
    """A policy config from a preset plus field overrides."""
    _, config_cls, presets = get_policy_entry(name).load()
    if preset not in presets:
        raise InvalidInputError(f"policy {name!r} has no preset {preset!r}; presets: {sorted(presets)}")
    return config_cls(**{**presets[preset], **fields})


def load_policy(path: str | Path, device: str | None = None, overrides: Mapping[str, str] | None = None):
    """Load any registered policy from a checkpoint directory (or a run directory: its best, else last),
    optionally with inference-time fields changed (`PolicyConfig.INFERENCE_FIELDS`)."""
    info = inspect_checkpoint(path, overrides)
    return get_policy_entry(info.policy).load()[0].from_checkpoint(info, device)


def load_source_policy(field: str, path: str | Path, device: str | None = None):
    """The checkpoint a config field names as the source of a trained part (CARP's `tokenizer_from`,
    PAD's `autoencoder_from`): `load_policy`, with a path that is missing or not a checkpoint reported
    under the field's name."""
    try:
        return load_policy(path, device=device)
    except MissingPathError as error:
        raise MissingPathError(f"{field}={str(path)!r}: {error}") from error


def require_same_fields(where: str, mine: Any, theirs: Any, fields: Sequence[str]) -> None:
    """Raise naming `where` (e.g. "tokenizer_from='runs/a'") and the first of `fields` on which the configs
    `mine` and `theirs` differ; tuples (from a preset) and lists (from JSON) compare equal."""

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, list | tuple) else value

    for field in fields:
        ours, source = plain(getattr(mine, field)), plain(getattr(theirs, field))
        if ours != source:
            raise InvalidInputError(f"{where}: its {field} is {source}, this run's is {ours}")
