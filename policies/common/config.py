"""The fields every policy config shares: inputs, horizons, normalisation, observation encoder."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from visuomotor.configs import apply_overrides, check_bounds
from visuomotor.datasets.sampler import WindowSpec
from visuomotor.datasets.store import is_image_key
from visuomotor.errors import InvalidInputError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
"""Noise schedules of diffusers' DDPM/DDIM schedulers that the diffusion policies accept."""

MAX_TRAIN_TIMESTEPS = 10_000
"""Noise levels a diffusion config may ask for: ten times any published schedule (DP 100, DDPM/PAD 1000);
the schedule's tables are built at load, so a damaged config.json must not ask for 2^40 of them."""


TIMESTEP_SPACINGS = ("leading", "trailing")
"""Where DDIM's inference steps sit among the training noise levels (diffusers' `timestep_spacing`).
leading (diffusers' default): 10 of 100 levels are 90, 80, ..., 0, so sampling starts from pure noise
labelled t = 90, where the squaredcos schedule keeps 14% of the signal; trailing: 99, 89, ..., 9, the
first step at the pure-noise level (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps
Are Flawed"; architecture.md §Diffusion sampling)."""


def check_timesteps(config: Any) -> None:
    """The diffusion step settings Diffusion Policy and PAD share: one error naming the field."""
    check_bounds(config, ["num_train_timesteps"], 1, MAX_TRAIN_TIMESTEPS)
    num_train_timesteps, num_inference_steps = config.num_train_timesteps, config.num_inference_steps
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise InvalidInputError(
            f"num_inference_steps must be in [1, num_train_timesteps={num_train_timesteps}], "
            f"got {num_inference_steps}"
        )
    if config.timestep_spacing not in TIMESTEP_SPACINGS:
        raise InvalidInputError(
            f"timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, got {config.timestep_spacing!r}"
        )


@dataclass
class PolicyConfig:
    """Base config. Input shapes, action size and the task vocabulary come from the training store."""

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = ("n_action_steps", "temporal_ensemble")
    """Fields a trained checkpoint may run with changed (`eval -o`): they change acting, not weights."""
    AUX_TARGETS: ClassVar[bool] = False
    """The policy trains `aux_target_key` (policies whose observations go through the shared ObsEncoder)."""

    n_obs_steps: int = 2
    """To: observation history the policy conditions on."""
    horizon: int = 16
    """Length of the predicted action chunk."""
    n_action_steps: int = 8
    """Ta: actions executed from each predicted chunk before predicting again."""
    temporal_ensemble: float | None = None
    """Temporal ensembling (ACT, Zhao et al. 2023): predict a chunk at every step and execute the weighted
    mean of the actions the last Ta chunks predicted for this step, weight exp(-m i) for the i-th oldest
    chunk (m = this value; 0 = equal weights, ACT uses 0.01). None = off: Ta actions open loop per chunk."""
    state_keys: tuple[str, ...] = ("observation.state",)
    """Low-dimensional observation keys (concatenated)."""
    image_keys: tuple[str, ...] = ()
    """Camera keys; empty for a state-only policy."""
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Per-frame shape of every input key (set from the store)."""
    action_dim: int = 0
    """Action size (set from the store)."""
    tasks: list[str] = field(default_factory=list)
    """Task vocabulary for the task embedding; fewer than two tasks means no task conditioning."""
    task_embed_dim: int = 32
    """Size of the learned task embedding."""
    state_norm: str = "min_max"
    """Normalisation of low-dim observations: min_max, mean_std or identity."""
    action_norm: str = "min_max"
    """Normalisation of actions."""
    image_norm: str = "mean_std"
    """Per-channel normalisation of images (after scaling to [0, 1])."""
    vision_backbone: str = "small_cnn"
    """Image encoder: small_cnn (trains in minutes on a CPU) or a timm model name such as resnet18."""
    vision_feature_dim: int = 64
    """Features per camera per frame."""
    cnn_width: int = 32
    """Channels of the small CNN's first layer (doubling twice); ignored by timm backbones."""
    crop_ratio: float = 0.9
    """Random crop (training) / centre crop (inference) side as a fraction of the image side; 1 = off."""
    shift_pad: int = 0
    """Random shift while training (DrQ, Kostrikov et al. 2020): pad each image by this many pixels
    (border repeated) and crop back to its size at a random offset, after the crop; 0 = off."""
    state_noise: float = 0.0
    """Std of Gaussian noise added to the normalised low-dim state while training (robomimic's obs-noise
    randomiser); it keeps a policy trained on a few demonstrations from keying on exact state values."""
    mixup: float = 0.0
    """Training: mix each window with the nearest window (normalised current state) of another
    demonstration of the same task, state and action chunk alike, with weight ~ U(0, mixup) on the
    partner; 0 = off. Low-dim states only. It fills the space between a few demonstrations with
    intermediate examples (see BENCHMARKS.md, CARP on reach)."""
    state_differences: tuple[tuple[int, int, int], ...] = ()
    """(a, b, n) triples: the policy also sees state[a:a+n] - state[b:b+n] of the raw low-dim state (the
    state keys concatenated), e.g. goal minus hand. Metaworld's 39-d environment state holds the hand at 0,
    the first object at 4, the second at 11 and the goal at 36 (each xyz)."""
    state_dims: tuple[int, ...] | None = None
    """Indices of the raw low-dim state (the state keys concatenated) the policy sees; None = all. With
    `state_differences` this gives a policy that sees positions only relative to each other."""
    aux_target_key: str | None = None
    """Training only, never an input: a low-dim key of the store (e.g. observation.environment_state, the
    simulator's privileged state) that a linear head predicts from the current frame's camera features, an
    auxiliary loss that makes the encoder find the objects and the goal (architecture.md §Vision). Needs
    cameras; a policy evaluated or deployed never reads the key."""
    aux_loss_weight: float = 1.0
    """Weight of that auxiliary loss (mean squared error of the normalised key) in the training loss."""
    device: str = "cpu"
    """Device the policy runs on."""

    def __post_init__(self) -> None:
        _check_device(self.device)
        check_bounds(self, ["n_obs_steps", "horizon"], 1)
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            raise InvalidInputError(
                f"n_action_steps must be in [1, horizon - n_obs_steps + 1] = [1, "
                f"{self.horizon - self.n_obs_steps + 1}], got {self.n_action_steps}"
            )
        if self.temporal_ensemble is not None and not math.isfinite(self.temporal_ensemble):
            raise InvalidInputError(
                f"temporal_ensemble must be a finite number or None, got {self.temporal_ensemble}"
            )
        for name in ("state_norm", "action_norm", "image_norm"):
            if getattr(self, name) not in ("min_max", "mean_std", "identity"):
                raise InvalidInputError(
                    f"{name} must be min_max, mean_std or identity, got {getattr(self, name)!r}"
                )
        bad = [k for k in self.image_keys if not is_image_key(k)]
        if bad:
            raise InvalidInputError(f"image_keys must start with 'observation.images.', got {bad}")
        check_bounds(self, ["crop_ratio"], 0.1, 1)
        check_bounds(self, ["shift_pad", "state_noise", "aux_loss_weight"], 0)
        if self.aux_target_key is not None:
            if not type(self).AUX_TARGETS:
                raise InvalidInputError(f"aux_target_key: a {type(self).__name__} has no auxiliary target")
            if not self.image_keys:
                raise InvalidInputError(
                    f"aux_target_key {self.aux_target_key!r} is predicted from camera features; this policy "
                    "has no cameras"
                )
            if self.aux_target_key in self.input_keys:
                raise InvalidInputError(
                    f"aux_target_key {self.aux_target_key!r} is also an input of this policy; the target "
                    "must be a key the policy does not see"
                )
        check_bounds(self, ["mixup"], 0, 1)
        if self.mixup > 0 and self.image_keys:
            raise InvalidInputError(
                f"mixup mixes low-dim states and actions; this policy also sees images {list(self.image_keys)}"
            )
        bad_diff = [t for t in self.state_differences if len(t) != 3 or min(t) < 0 or t[2] < 1]
        if bad_diff:
            raise InvalidInputError(
                f"state_differences must hold (a, b, n) triples with a, b >= 0 and n >= 1, got {bad_diff}"
            )
        self.state_keys = tuple(self.state_keys)
        self.image_keys = tuple(self.image_keys)
        self.state_differences = tuple(tuple(t) for t in self.state_differences)  # type: ignore[misc]
        if self.state_dims is not None:
            self.state_dims = tuple(self.state_dims)

    @property
    def input_keys(self) -> tuple[str, ...]:
        return (*self.state_keys, *self.image_keys)

    @property
    def training_keys(self) -> tuple[str, ...]:
        """The observation keys a training window holds: the inputs and the auxiliary target."""
        return (*self.input_keys, *((self.aux_target_key,) if self.aux_target_key else ()))

    def window_spec(self, obs_keys: tuple[str, ...] | None = None) -> WindowSpec:
        """The training windows of this policy: To observation frames, a chunk of `horizon` actions, padded
        after an episode's end so its last Ta actions are covered (Diffusion Policy's pad_after = Ta - 1)."""
        return WindowSpec(
            n_obs_steps=self.n_obs_steps,
            horizon=self.horizon,
            obs_keys=self.training_keys if obs_keys is None else obs_keys,
            pad_after=self.n_action_steps - 1,
        )

    @property
    def use_tasks(self) -> bool:
        return len(self.tasks) > 1

    @property
    def state_dim(self) -> int:
        """Size of the raw low-dim state: the state keys' frames flattened and concatenated."""
        return sum(math.prod(self.input_shapes[k]) for k in self.state_keys)

    @property
    def differences_dim(self) -> int:
        """Number of values `state_differences` adds per frame."""
        return sum(n for _, _, n in self.state_differences)

    def validate_inputs(self) -> None:
        """The shapes the policy needs are known (i.e. the config was adapted to a store)."""
        missing = [k for k in self.training_keys if k not in self.input_shapes]
        if missing or self.action_dim <= 0:
            raise InvalidInputError(
                f"config is not adapted to a dataset: missing input shapes {missing}, action_dim={self.action_dim}"
            )
        bad_dims = [d for d in self.state_dims or () if not 0 <= d < self.state_dim]
        if bad_dims:
            raise InvalidInputError(
                f"state_dims {bad_dims} lie outside the {self.state_dim}-d state of {list(self.state_keys)}"
            )
        out_of_range = [(a, b, n) for a, b, n in self.state_differences if max(a, b) + n > self.state_dim]
        if out_of_range:
            raise InvalidInputError(
                f"state_differences {out_of_range} reach past the {self.state_dim}-d state "
                f"of {list(self.state_keys)}"
            )


def with_inference_overrides(config: Any, overrides: Mapping[str, str], where: str) -> Any:
    """A copy of a trained policy's `config` with `field=value` strings applied to its inference-time
    fields (`INFERENCE_FIELDS`); other fields would not match the weights, so they are refused. Errors
    start with `where`."""
    allowed = type(config).INFERENCE_FIELDS
    refused = sorted(set(overrides) - set(allowed))
    if refused:
        raise InvalidInputError(
            f"{where}: {', '.join(refused)} cannot change after training (the weights depend on it); "
            f"a {type(config).__name__} checkpoint can run with other {', '.join(allowed)}"
        )
    try:
        return apply_overrides(config, dict(overrides))
    except ValueError as exc:
        raise InvalidInputError(f"{where}: {exc}") from exc


def _check_device(device: Any) -> None:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"device must name a torch device (cpu, cuda, cuda:1), got {device!r}"
        ) from exc
