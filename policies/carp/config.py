"""CARP config and presets (Gong et al. 2024; settings from their `utils/arg_util.py` and scripts,
see ../shared/papers/carp.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.config import PolicyConfig


@dataclass
class CarpConfig(PolicyConfig):
    """CARP: multi-scale action tokenizer (stage 1) + coarse-to-fine autoregressive transformer (stage 2)."""

    AUX_TARGETS: ClassVar[bool] = True
    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = (*PolicyConfig.INFERENCE_FIELDS, "top_k")

    scales: tuple[int, ...] = (1, 2, 3, 4)
    """Token lengths of the scales, coarse to fine; the last equals horizon / 2^len(vae_widths)."""
    codebook_size: int = 512
    """Codes per action dimension (CARP: 512 single-task, 1024 multi-task)."""
    code_dim: int = 8
    """Size of a code vector."""
    vae_widths: tuple[int, ...] = (4, 8)
    """Channels of the per-dimension VAE at each downsampling level (CARP: ch 2 x ch_mult (2, 4))."""
    phi_mix: float = 0.5
    """Weight of the refiner conv Phi_k in h + phi_mix * (Phi_k(h) - h)."""
    commitment: float = 0.25
    """Weight of the commitment term of the VQ loss."""
    cosine_lookup: bool = True
    """Nearest code by cosine similarity (else Euclidean distance)."""
    width: int = 64
    """Transformer width C."""
    depth: int = 8
    """Transformer blocks."""
    heads: int = 8
    """Attention heads (CARP follows VAR: heads = depth)."""
    mlp_ratio: float = 4.0
    """FFN hidden size / width."""
    drop_path: float = 0.0
    """Largest stochastic-depth rate (CARP: 0.1 * depth / 24)."""
    top_k: int = 1
    """Sampling at inference: 1 = greedy argmax (CARP's default), k > 1 = sample among the top k codes."""
    tokenizer_steps: int = 1500
    """Gradient steps of stage 1 (the tokenizer); the rest of the run's steps train stage 2."""
    tokenizer_batch_size: int = 256
    """Chunks per tokenizer step (CARP: 256)."""
    tokenizer_lr: float = 3e-4
    """Stage-1 AdamW learning rate (CARP: 3e-4, betas (0.5, 0.9), weight decay 0.005)."""
    transformer_weight_decay: float = 0.05
    """Stage-2 AdamW weight decay (CARP: 0.05, betas (0.9, 0.95))."""
    tokenizer_from: str = ""
    """Reuse the tokenizer (and action normalisation) of this CARP checkpoint or run; skips stage 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scales = tuple(self.scales)
        self.vae_widths = tuple(self.vae_widths)
        latent = self.horizon / 2 ** len(self.vae_widths)
        if latent != int(latent) or self.scales[-1] != latent:
            raise InvalidInputError(
                f"scales must end at the latent length horizon / 2^{len(self.vae_widths)} = {latent:g} "
                f"(horizon {self.horizon}), got scales {list(self.scales)}"
            )
        if list(self.scales) != sorted(set(self.scales)) or self.scales[0] < 1:
            raise InvalidInputError(f"scales must be strictly increasing and >= 1, got {list(self.scales)}")
        if self.width % self.heads:
            raise InvalidInputError(f"width {self.width} must be divisible by heads {self.heads}")
        if self.top_k < 1 or self.top_k > self.codebook_size:
            raise InvalidInputError(
                f"top_k must be in [1, codebook_size={self.codebook_size}], got {self.top_k}"
            )
        if self.tokenizer_steps < 0:
            raise InvalidInputError(f"tokenizer_steps must be >= 0, got {self.tokenizer_steps}")


PRESETS: dict[str, dict] = {
    # CARP's state-based transformer already trains in minutes on a CPU. Deviations, measured on the
    # MT10 store (10 demos per task, 6,987 chunks; 1,500 tokenizer steps of batch 256): CARP's 2/4/8-channel
    # VAE reconstructed the (often saturated) Metaworld actions with an RMSE of 0.098 in normalised units
    # at lr 1e-3 (0.136 at CARP's 3e-4), the 16/32-channel VAE used here with 0.040. CARP's codebook of
    # 512 trained for 6,000 steps halves that error again (0.018) and, with relative positions, gave 81.0%
    # on MT10 against 77.5% (-o codebook_size=512 -o tokenizer_steps=6000 --steps 14000); the preset keeps
    # 256 codes and 2,000 steps so that the cpu train preset's default 3,000 steps still train stage 2.
    # Drop-path 0.1 (CARP's state policy: 0.033): on MT10 it raised success from 74.5% to 78.5% (0.2:
    # 78.5%, 0.3: 78.0%; BENCHMARKS.md).
    "cpu": {
        "codebook_size": 256,
        "vae_widths": (16, 32),
        "tokenizer_lr": 1e-3,
        "width": 64,
        "depth": 8,
        "heads": 8,
        "drop_path": 0.1,
        "tokenizer_steps": 2000,
        "vision_backbone": "small_cnn",
        "vision_feature_dim": 64,
        "cnn_width": 16,
    },
    # CARP image policy (robomimic): depth 16, width 160, heads 16, codebook 512 x 8, ResNet-18 (GroupNorm).
    "paper": {
        "codebook_size": 512,
        "width": 160,
        "depth": 16,
        "heads": 16,
        "drop_path": 0.1 * 16 / 24,
        "tokenizer_steps": 20_000,
        "vision_backbone": "resnet18",
        "vision_feature_dim": 64,
    },
    # CARP state policy (robomimic): depth 8, width 64, heads 8, codebook 512 x 8.
    "paper_state": {
        "codebook_size": 512,
        "width": 64,
        "depth": 8,
        "heads": 8,
        "drop_path": 0.1 * 8 / 24,
        "tokenizer_steps": 20_000,
    },
}
