"""A saved policy directory (architecture.md §Training runs and checkpoints): `config.json` (policy
name, format, config) beside `model.safetensors`. Reading one needs no torch, so the CLI's parent
process can check a checkpoint before any worker starts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visuomotor.configs import from_dict
from visuomotor.errors import InvalidInputError, MissingPathError
from visuomotor.keys import camera_of
from visuomotor.rundir import resolve_checkpoint
from visuomotor.sim.registry import camera_pose_of

CHECKPOINT_FORMAT = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read once: where it is, which policy, and its config (validated, with
    any inference-time overrides applied)."""

    directory: Path
    policy: str
    config: Any
    weights_sha256: str | None = None
    """SHA-256 of `model.safetensors` as written (checkpoints from before it was recorded: None)."""
    dataset: dict[str, Any] = field(default_factory=dict)
    """Facts of the training data (`dataset_facts`): fps, env id, action space, cameras."""

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_NAME

    def weights_digest(self) -> str:
        """SHA-256 of the weights: the recorded one, or computed for checkpoints without it."""
        return self.weights_sha256 or file_sha256(self.weights)

    @property
    def cameras(self) -> list[str]:
        """Cameras the policy sees, in its input order; empty for a state-only policy."""
        return [camera_of(k) for k in self.config.image_keys]

    @property
    def camera_pose(self) -> str | None:
        """The corner2 pose its images were taken from (Metaworld stores), None when not recorded."""
        return camera_pose_of(self.dataset)

    @property
    def image_size(self) -> int | None:
        """Side of the images it was trained on (H of the first camera), None without cameras."""
        keys = self.config.image_keys
        return int(self.config.input_shapes[keys[0]][0]) if keys else None


def inspect_checkpoint(
    path: str | Path, overrides: Mapping[str, str] | None = None, flag: str = "-o"
) -> CheckpointInfo:
    """Read the checkpoint at `path` (a checkpoint directory, or a run directory: its best, else last)
    and build its config with `overrides` applied to inference-time fields. Every caller that loads
    or checks a checkpoint goes through here: the CLI's parent before workers start, each worker
    when it builds the policy. Errors name the directory, the file or the field (`flag` says which
    command-line option the overrides came from)."""
    from visuomotor.policies import get_policy_entry
    from visuomotor.policies.common.config import with_inference_overrides

    directory = resolve_checkpoint(Path(path))
    meta = read_checkpoint_meta(directory)
    config_cls = get_policy_entry(meta["policy"]).config_class_and_presets()[0]
    config = from_dict(config_cls, meta["config"], where=f"{directory / CONFIG_NAME}:config")
    if overrides:
        config = with_inference_overrides(config, overrides, f"{flag} for {path}")
    return CheckpointInfo(
        directory, meta["policy"], config, meta.get("weights_sha256"), meta.get("dataset") or {}
    )


def dataset_facts(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint keeps of its training store's attributes: what a robot must match to run it."""
    keys = ("fps", "env_id", "action_space", "cameras", "image_size", "camera_info")
    return {k: attrs[k] for k in keys if k in attrs}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(info: CheckpointInfo) -> None:
    """The weights file is the one the checkpoint recorded; otherwise one error naming it."""
    if info.weights_sha256 is None:
        return
    actual = file_sha256(info.weights)
    if actual != info.weights_sha256:
        raise InvalidInputError(
            f"{info.weights}: checksum mismatch (sha256 {actual[:16]}..., {CONFIG_NAME} recorded "
            f"{info.weights_sha256[:16]}...): the file is damaged or was replaced"
        )


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a checkpoint's config); one error naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    """`config.json` of a checkpoint directory, with its required fields checked."""
    path = directory / CONFIG_NAME
    if not path.exists():
        raise MissingPathError(f"{directory}: not a policy checkpoint (no {CONFIG_NAME})")
    if not (directory / WEIGHTS_NAME).exists():
        raise MissingPathError(f"{directory}: checkpoint has no {WEIGHTS_NAME}")
    meta = read_json_object(path)
    for name, kind in (("policy", str), ("config", dict)):
        if not isinstance(meta.get(name), kind):
            raise InvalidInputError(
                f"{path}: field '{name}' must be a {kind.__name__}, got {meta.get(name)!r:.80}"
            )
    for name, kind in (("weights_sha256", str), ("dataset", dict)):
        if meta.get(name) is not None and not isinstance(meta[name], kind):
            raise InvalidInputError(
                f"{path}: field '{name}' must be a {kind.__name__}, got {meta[name]!r:.80}"
            )
    return meta
