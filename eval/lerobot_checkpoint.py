"""A LeRobot policy checkpoint, read and checked without LeRobot or torch (architecture.md §Evaluation).

LeRobot 0.6 saves a policy as `config.json` (draccus-encoded config with a `type` tag and the
policy's `input_features` / `output_features`), `model.safetensors`, and two processor pipelines,
`policy_preprocessor.json` / `policy_postprocessor.json`, whose normaliser steps keep their statistics
in `*.safetensors` state files. The eval command's parent reads those JSON files here, before any
worker starts, to fail early and to learn which cameras and image size to render; each worker checks
them again before LeRobot loads anything (`eval/lerobot_policy.py`).

Safety: only JSON and safetensors are ever read. A processor JSON may name a step by a Python import
path (`"class": "pkg.mod.Cls"`), which LeRobot would import and call with the JSON's arguments: that
is code the checkpoint chooses, so such a checkpoint is refused; steps must name LeRobot's registry
(`registry_name`) and their state files must be plain `.safetensors` names inside the directory.

Matching (architecture.md §Conventions): our envs already use LeRobot's keys, so an input feature is
fed from the env key of the same name; LeRobot's single-camera `observation.image` (its Metaworld env)
is fed from the first rendered camera. Shapes must be equal (images as LeRobot's (3, H, W)) and the
action size the env's; otherwise one error naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError, MissingKeyError, MissingPathError
from visuomotor.keys import ACTION, IMAGE_PREFIX
from visuomotor.policies.common.saved import read_json_object

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PROCESSOR_FILES = ("policy_preprocessor.json", "policy_postprocessor.json")

SINGLE_IMAGE = "observation.image"
"""LeRobot's key for a dataset's one camera (its Metaworld and PushT envs)."""

SUPPORTED_TYPES = ("act", "diffusion")
"""Policy types whose checkpoint holds everything they need. Others (SmolVLA, pi0, ...) build
sub-models from the Hub when constructed, which cannot work offline and would load files this
module has not checked."""

INFERENCE_FIELDS = ("n_action_steps", "num_inference_steps", "temporal_ensemble_coeff")
"""LeRobot config fields that change acting, not weights: `eval -o` may set them."""


@dataclass(frozen=True)
class Feature:
    """One LeRobot policy feature: its type (STATE, ENV, VISUAL, ACTION) and shape."""

    kind: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class LeRobotCheckpoint:
    """What a LeRobot checkpoint directory holds, as far as evaluation needs to know before loading it."""

    directory: Path
    policy_type: str
    inputs: dict[str, Feature]
    action_dim: int
    config: dict[str, Any]
    """config.json as read (with any inference-time overrides still unapplied)."""

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.inputs.items() if f.kind == "VISUAL"]

    @property
    def image_size(self) -> int | None:
        """Side of the square images every camera input takes; None without cameras."""
        sizes = {self.inputs[k].shape[1:] for k in self.image_keys}
        if not sizes:
            return None
        if len(sizes) > 1 or any(h != w for h, w in sizes):
            shapes = {k: list(self.inputs[k].shape) for k in self.image_keys}
            raise InvalidInputError(
                f"{self.directory}: camera inputs {shapes} are not all one square size; our envs render "
                "every camera at one square size"
            )
        return int(next(iter(sizes))[0])

    def cameras(self, single_image_camera: str) -> list[str]:
        """The cameras to render, in input order (`observation.image` is `single_image_camera`)."""
        out = [single_image_camera if k == SINGLE_IMAGE else k[len(IMAGE_PREFIX) :] for k in self.image_keys]
        return list(dict.fromkeys(out))


def inspect_lerobot_checkpoint(
    path: str | Path, overrides: Mapping[str, str] | None = None, flag: str = "-o"
) -> LeRobotCheckpoint:
    """Read and check a LeRobot checkpoint directory (JSON only). Errors name the file, step or field."""
    directory = Path(path)
    if not directory.is_dir():
        raise MissingPathError(f"{directory}: not found (no such LeRobot checkpoint directory)")
    config = _read_json(directory / CONFIG_FILE)
    if not (directory / WEIGHTS_FILE).is_file():
        raise MissingPathError(f"{directory}: LeRobot checkpoint has no {WEIGHTS_FILE}")
    for name in PROCESSOR_FILES:
        check_processor(directory, name)
    policy_type = config.get("type")
    if policy_type not in SUPPORTED_TYPES:
        raise InvalidInputError(
            f"{directory / CONFIG_FILE}: LeRobot policy type {policy_type!r} is not supported; "
            f"supported: {', '.join(SUPPORTED_TYPES)} (their checkpoints are self-contained)"
        )
    if config.get("use_peft"):
        raise InvalidInputError(f"{directory / CONFIG_FILE}: PEFT adapter checkpoints are not supported")
    inputs = _features(directory, config, "input_features")
    outputs = _features(directory, config, "output_features")
    action = outputs.get(ACTION)
    if action is None or action.kind != "ACTION" or len(action.shape) != 1:
        raise MissingKeyError(f"{directory / CONFIG_FILE}: output_features has no 1-d '{ACTION}'")
    check_overrides(directory, config, overrides or {}, flag)
    return LeRobotCheckpoint(directory, str(policy_type), inputs, int(action.shape[0]), config)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingPathError(f"{path.parent}: not a LeRobot checkpoint (no {path.name})")
    return read_json_object(path)


def check_processor(directory: Path, name: str) -> None:
    """A processor pipeline JSON names only registered steps and plain safetensors state files."""
    path = directory / name
    if not path.is_file():
        raise MissingPathError(
            f"{directory}: LeRobot checkpoint has no {name} (saved before LeRobot 0.4, with normalisation "
            "inside the model? LeRobot's processor/migrate_policy_normalization.py converts it)"
        )
    steps = _read_json(path).get("steps")
    if not isinstance(steps, list):
        raise InvalidInputError(f"{path}: missing the list 'steps'")
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("registry_name"), str):
            named = step.get("class") if isinstance(step, dict) else None
            raise InvalidInputError(
                f"{path}: step {i} is not a registered LeRobot step"
                + (
                    f" (it names the Python class {named!r}; code a checkpoint names is never imported)"
                    if named
                    else ""
                )
            )
        state = step.get("state_file")
        if state is None:
            continue
        if not isinstance(state, str) or Path(state).name != state or not state.endswith(".safetensors"):
            raise InvalidInputError(f"{path}: step {i}: state_file {state!r} is not a .safetensors file name")
        if not (directory / state).is_file():
            raise MissingPathError(f"{path}: step {i}: state file {state} is missing")


def _features(directory: Path, config: dict[str, Any], field: str) -> dict[str, Feature]:
    where = f"{directory / CONFIG_FILE}:{field}"
    raw = config.get(field)
    if not isinstance(raw, dict) or not raw:
        raise InvalidInputError(f"{where}: missing or empty")
    out: dict[str, Feature] = {}
    for key, ft in raw.items():
        shape = ft.get("shape") if isinstance(ft, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and n > 0 for n in shape):
            raise InvalidInputError(f"{where}: '{key}' has no valid shape: {ft!r:.80}")
        out[key] = Feature(str(ft.get("type")), tuple(shape))
    return out


def check_overrides(directory: Path, config: dict[str, Any], overrides: Mapping[str, str], flag: str) -> None:
    """Only inference-time fields of this config may change; n_action_steps stays within the chunk."""
    allowed = [f for f in INFERENCE_FIELDS if f in config]
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        raise InvalidInputError(
            f"{flag} for {directory}: {', '.join(refused)} cannot change for a LeRobot "
            f"{config.get('type')} checkpoint; it can run with other {', '.join(allowed)}"
        )
    if "n_action_steps" in overrides:
        limit = _action_steps_limit(config)
        text = overrides["n_action_steps"]
        if not text.strip().isdigit() or not 1 <= int(text) <= limit:
            raise InvalidInputError(
                f"{flag} for {directory}: n_action_steps must be in [1, {limit}], got {text!r}"
            )


def _action_steps_limit(config: dict[str, Any]) -> int:
    """Most actions one predicted chunk can supply from the current step on."""
    if config.get("type") == "diffusion":  # the chunk starts at the oldest observation
        return int(config["horizon"]) - int(config["n_obs_steps"]) + 1
    return int(config["chunk_size"])


def env_observations(
    state_dim: int, env_state_dim: int, cameras: Sequence[str], image_size: int | None
) -> dict[str, tuple[int, ...]]:
    """Key -> per-frame shape of what one of our envs gives (registry facts; images (H, W, 3))."""
    out: dict[str, tuple[int, ...]] = {
        "observation.state": (state_dim,),
        "observation.environment_state": (env_state_dim,),
    }
    if image_size is not None:
        out |= {IMAGE_PREFIX + c: (image_size, image_size, 3) for c in cameras}
    return out


def match_inputs(
    ckpt: LeRobotCheckpoint,
    observations: Mapping[str, Sequence[int]],
    action_dim: int,
    where: str,
    single_image_source: str | None,
) -> dict[str, str]:
    """LeRobot input key -> the env observation key that feeds it; an error naming the key when an
    input has no counterpart of the same shape in `where`, or the action sizes differ."""
    sources: dict[str, str] = {}
    for key, ft in ckpt.inputs.items():
        source = single_image_source if key == SINGLE_IMAGE else key
        if source is None or source not in observations:
            gives = ", ".join(f"{k} {list(s)}" for k, s in observations.items())
            raise MissingKeyError(
                f"{ckpt.directory}: input '{key}' has no counterpart in {where} (it gives {gives})"
            )
        shape = tuple(observations[source])
        is_image = source.startswith(IMAGE_PREFIX)
        if is_image != (ft.kind == "VISUAL"):
            raise InvalidInputError(
                f"{ckpt.directory}: input '{key}' is {ft.kind}, but {where}'s '{source}' is not"
            )
        expected = (shape[2], shape[0], shape[1]) if is_image else shape  # LeRobot's images are (C, H, W)
        if ft.shape != expected:
            raise InvalidInputError(
                f"{ckpt.directory}: input '{key}' has shape {list(ft.shape)}; {where} gives {list(expected)}"
            )
        sources[key] = source
    if ckpt.action_dim != action_dim:
        raise InvalidInputError(
            f"{ckpt.directory}: output '{ACTION}' has size {ckpt.action_dim}; {where} takes {action_dim}"
        )
    return sources
