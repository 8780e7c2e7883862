"""Diffusion Policy config and presets (Chi et al. 2023; settings from DP's `config/*diffusion_policy_cnn*`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.config import BETA_SCHEDULES, PolicyConfig, check_timesteps


@dataclass
class DiffusionConfig(PolicyConfig):
    """Diffusion Policy with the 1-D temporal conv U-Net."""

    AUX_TARGETS: ClassVar[bool] = True
    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = (
        *PolicyConfig.INFERENCE_FIELDS,
        "sampler",
        "num_inference_steps",
        "timestep_spacing",
    )

    down_dims: tuple[int, ...] = (256, 512, 1024)
    """U-Net channel widths per level (DP paper: 512, 1024, 2048)."""
    kernel_size: int = 5
    """Temporal conv kernel size."""
    n_groups: int = 8
    """GroupNorm groups in the U-Net."""
    step_embed_dim: int = 128
    """Diffusion-step embedding size."""
    num_train_timesteps: int = 100
    """DDPM noise levels in training."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule."""
    prediction_type: str = "epsilon"
    """What the network predicts: epsilon or sample."""
    clip_sample: bool = True
    """Clip denoised samples to [-1, 1] (actions are min-max normalised)."""
    sampler: str = "ddim"
    """Inference scheduler: ddpm or ddim."""
    num_inference_steps: int = 10
    """Denoising steps at inference (DDPM uses num_train_timesteps when this is larger)."""
    timestep_spacing: str = "leading"
    """Where the DDIM steps sit among the training noise levels (common/config.py TIMESTEP_SPACINGS):
    leading (diffusers' default) starts sampling at t = 90 of 100 with 10 steps, trailing at t = 99."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.down_dims = tuple(self.down_dims)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidInputError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.sampler not in ("ddpm", "ddim"):
            raise InvalidInputError(f"sampler must be ddpm or ddim, got {self.sampler!r}")
        if self.prediction_type not in ("epsilon", "sample"):
            raise InvalidInputError(
                f"prediction_type must be epsilon or sample, got {self.prediction_type!r}"
            )
        check_timesteps(self)
        if self.horizon % (2 ** (len(self.down_dims) - 1)):
            raise InvalidInputError(
                f"horizon {self.horizon} must be divisible by 2^(levels-1) = {2 ** (len(self.down_dims) - 1)}"
            )


PRESETS: dict[str, dict] = {
    # Small enough to train to a useful state policy in minutes on 2 CPU cores.
    "cpu": {
        "down_dims": (64, 128, 256),
        "step_embed_dim": 64,
        "vision_backbone": "small_cnn",
        "vision_feature_dim": 64,
        "cnn_width": 16,
        "sampler": "ddim",
        "num_inference_steps": 10,
    },
    # DP paper, CNN-based, image tasks: ResNet-18 with GroupNorm, 76x76 crops of 84x84 (ratio ~0.9).
    "paper": {
        "down_dims": (512, 1024, 2048),
        "step_embed_dim": 128,
        "kernel_size": 5,
        "n_groups": 8,
        "vision_backbone": "resnet18",
        "vision_feature_dim": 512,
        "sampler": "ddpm",
        "num_inference_steps": 100,
    },
}
