"""PAD config and presets (Guo et al. 2024; every known setting in architecture.md §PAD)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from visuomotor.datasets.sampler import WindowSpec
from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.config import BETA_SCHEDULES, PolicyConfig, check_timesteps


@dataclass(frozen=True)
class LatentGeometry:
    """What a VAE makes of a frame, read from its config.json: channels per frame, pixels per latent cell
    along a side, and the factor latents are scaled by (SD: 0.18215, so they have about unit variance)."""

    channels: int
    factor: int
    scaling: float


def vae_geometry(path: str) -> LatentGeometry:
    """The latent geometry of the diffusers AutoencoderKL directory at `path`, without loading weights (a
    config is checked before any network is built)."""
    config_file = Path(path).expanduser() / "config.json"
    if not config_file.is_file():
        raise InvalidInputError(
            f"vae_path {path!r} has no config.json: it must be a local diffusers AutoencoderKL directory "
            f"(config.json + diffusion_pytorch_model.safetensors, e.g. a copy of stabilityai/sd-vae-ft-mse)"
        )
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"vae_path {path!r}: config.json is not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("_class_name") != "AutoencoderKL":
        found = config.get("_class_name") if isinstance(config, dict) else type(config).__name__
        raise InvalidInputError(f"vae_path {path!r} holds a {found!r}, not an AutoencoderKL")
    blocks = config.get("block_out_channels", [])
    return LatentGeometry(
        channels=int(config.get("latent_channels", 4)),
        factor=2 ** (len(blocks) - 1),  # each encoder block but the last halves the frame
        scaling=float(config.get("scaling_factor", 0.18215)),
    )


@dataclass
class PadConfig(PolicyConfig):
    """A DiT that denoises the frames at `future_offsets` and the action chunk with one timestep."""

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = (
        *PolicyConfig.INFERENCE_FIELDS,
        "num_inference_steps",
        "timestep_spacing",
    )
    LEARNS_FROM_VIDEO: ClassVar[bool] = True
    """Action-free windows (`--video-data`) train its frame prediction, their action loss masked."""

    future_offsets: tuple[int, ...] = (4, 8, 12)
    """Frames predicted, relative to the current one (paper: t+4, t+8, t+12)."""
    predict_images: bool = True
    """False: the ablation "PAD without image prediction": the same network with the future frames
    removed from its input and loss (it still sees the current frame)."""
    action_tokens: str = "one"
    """one: a single token for the whole noisy chunk with the current proprio (PAD's
    `--action_condition`); per_step: one token per action step, each with the proprio."""
    camera_tokens: str = "stacked"
    """How several cameras become image tokens. stacked: their frames share one token per patch position,
    the cameras stacked on channels (the paper has one camera); separate: each camera has its own patch
    tokens (the same patch embedding, plus a learned embedding per camera), so attention can relate a
    region of one view to any region of the other, at twice the image tokens with two cameras."""
    camera_features: bool = False
    """Also condition the DiT on features of the current frames from a small CNN per camera (Diffusion
    Policy's observation encoder: `vision_backbone`, `vision_feature_dim`, `cnn_width`), trained with the
    DiT by both losses and added to the timestep and task conditioning that drives adaLN. Not in the paper,
    whose DiT sees the current frame only as frozen-VAE patch tokens; here the actions barely read those
    tokens (architecture.md §PAD), while DP's CNN, trained for the actions, reads both cameras. On in the
    cpu preset (61.2% on MT10 against 52.2% for the recipe without it, BENCHMARKS.md); off in the paper
    preset."""
    patch_size: int = 8
    """Side of the square patches the stacked frames (or their latents, with `vae_path`) are cut into, one
    token each."""
    vae_path: str | None = None
    """A local diffusers AutoencoderKL directory (the paper's SD-VAE, `stabilityai/sd-vae-ft-mse`, when you
    have its weights): the image branch then works on its scaled latents, 8x smaller per side for SD's VAE
    (256 px frames with patch 2 give the paper's 256 tokens); frozen and not saved in checkpoints, which
    keep the path. None: pixels in [-1, 1]."""
    autoencoder_steps: int = 0
    """Steps of a first training stage that fits a small frame autoencoder to the run's own frames
    (`policies/pad/autoencoder.py`, saved in the checkpoint like CARP's tokenizer); the image branch then
    works on its latents, `autoencoder_factor` times smaller per side with `autoencoder_channels`
    channels, as the paper's on SD-VAE's. 0: pixels (or `vae_path`'s latents)."""
    autoencoder_from: str = ""
    """Reuse the frame autoencoder of this PAD checkpoint or run (trained with `autoencoder_steps`), frozen
    as it is, and skip the first stage: DiT variants on one store then share one latent space."""
    autoencoder_channels: int = 4
    autoencoder_factor: int = 4
    """How many times smaller per side the latents are than the frames (a power of 2)."""
    autoencoder_width: int = 32
    """Channels of the autoencoder's convolutions."""
    autoencoder_batch_size: int = 16
    """Windows per batch in the autoencoder's stage (each gives every camera's current and future
    frames: 128 frames with two cameras and three offsets)."""
    hidden_dim: int = 256
    depth: int = 6
    num_heads: int = 4
    text_encoder: str | None = None
    """A local Hugging Face text model directory (PAD uses CLIP's: a copy of openai/clip-vit-base-patch32):
    each task's instruction is encoded by it once, when a run starts, and a trained linear layer maps the
    features into the DiT's conditioning, in place of a learned embedding per task. Needs `transformers`
    (`pip install 'visuomotor[text]'`); checkpoints keep the features, so acting needs neither."""
    text_dim: int = 0
    """Width of `text_encoder`'s features: set from the model when a run starts (0 before)."""
    image_prediction: str = "sample"
    """What the image branch predicts: sample (the clean future frames) or epsilon (their noise, as PAD on
    SD-VAE latents). On pixels with 8x8 patches a token would have to emit 192 noise values per channel
    of its patch from a few hundred features, which it cannot (measured: the frame loss stalled at 0.7
    and sampled frames stayed noise); the clean frames are smooth enough to predict."""
    image_loss_weight: float = 1.0
    action_loss_weight: float = 1.0
    """PAD's code weighs both 1 (the paper ramps the action weight to 2 over 100k steps)."""
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    num_inference_steps: int = 10
    """DDIM steps at inference (paper: 75)."""
    timestep_spacing: str = "leading"
    """Where the DDIM steps sit among the training noise levels (common/config.py TIMESTEP_SPACINGS):
    leading (diffusers' default) starts sampling at t = 90 of 100 with 10 steps, trailing at t = 99. Both
    presets: trailing (architecture.md §Diffusion sampling); leading is what checkpoints saved before the
    field existed were measured with."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.future_offsets = tuple(int(o) for o in self.future_offsets)
        if not self.future_offsets or min(self.future_offsets) < 1:
            raise InvalidInputError(
                f"future_offsets must be positive frame offsets, got {self.future_offsets}"
            )
        chunk_end = self.horizon - self.n_obs_steps  # the last action's offset from the current frame
        if max(self.future_offsets) > chunk_end + 1:
            raise InvalidInputError(
                f"future_offsets {self.future_offsets} run past the action chunk: horizon {self.horizon} with "
                f"n_obs_steps {self.n_obs_steps} predicts actions up to t+{chunk_end}; the last future frame "
                f"may be at most t+{chunk_end + 1} (raise horizon or lower the offsets)"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidInputError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.image_prediction not in ("sample", "epsilon"):
            raise InvalidInputError(
                f"image_prediction must be sample or epsilon, got {self.image_prediction!r}"
            )
        if self.action_tokens not in ("one", "per_step"):
            raise InvalidInputError(f"action_tokens must be one or per_step, got {self.action_tokens!r}")
        if self.camera_tokens not in ("stacked", "separate"):
            raise InvalidInputError(f"camera_tokens must be stacked or separate, got {self.camera_tokens!r}")
        if self.hidden_dim % self.num_heads or self.hidden_dim % 4:
            raise InvalidInputError(
                f"hidden_dim {self.hidden_dim} must be divisible by num_heads {self.num_heads} and by 4"
            )
        ae = (
            self.autoencoder_steps,
            self.autoencoder_channels,
            self.autoencoder_width,
            self.autoencoder_batch_size,
        )
        if ae[0] < 0 or ae[1] < 1 or ae[2] < 8 or ae[3] < 1:
            raise InvalidInputError(
                "autoencoder_steps must be >= 0, autoencoder_channels >= 1, autoencoder_width >= 8 and "
                f"autoencoder_batch_size >= 1, got {ae[0]}, {ae[1]}, {ae[2]} and {ae[3]}"
            )
        factor = self.autoencoder_factor
        if factor < 2 or factor & (factor - 1):
            raise InvalidInputError(f"autoencoder_factor must be a power of 2 (2, 4, 8, ...), got {factor}")
        if self.autoencoder_from and self.vae_path:
            raise InvalidInputError(
                f"give either vae_path or autoencoder_from (a PAD run's frame autoencoder), not both: got "
                f"vae_path={self.vae_path!r} and autoencoder_from={self.autoencoder_from!r}"
            )
        if self.autoencoder_steps and self.vae_path:
            raise InvalidInputError(
                "give either vae_path (a pretrained VAE's latents) or autoencoder_steps (train one on the "
                f"store first), not both: got vae_path={self.vae_path!r} and autoencoder_steps="
                f"{self.autoencoder_steps} (the cpu preset trains its own; add -o autoencoder_steps=0)"
            )
        check_timesteps(self)

    @property
    def latent_frames(self) -> bool:
        """Whether the image branch works on latents (a VAE's or the run's own autoencoder's), not pixels."""
        return bool(self.vae_path or self.own_autoencoder)

    @property
    def own_autoencoder(self) -> bool:
        """Whether the policy holds a frame autoencoder: trained in its first stage, or `autoencoder_from`'s."""
        return bool(self.autoencoder_steps or self.autoencoder_from)

    def validate_inputs(self) -> None:
        super().validate_inputs()
        if not self.image_keys:
            raise InvalidInputError(
                "PAD predicts camera frames: it needs at least one camera (image_keys is empty; train with "
                "the store's cameras, not --cameras none)"
            )
        sizes = {tuple(self.input_shapes[k]) for k in self.image_keys}
        if len(sizes) > 1:
            raise InvalidInputError(
                f"PAD stacks its cameras: they must share one frame size, got {sorted(sizes)}"
            )
        h, w, _ = next(iter(sizes))
        if self.latent_frames:
            factor = vae_geometry(self.vae_path).factor if self.vae_path else self.autoencoder_factor
            source = "the VAE at vae_path" if self.vae_path else "the frame autoencoder (autoencoder_factor)"
            if h % factor or w % factor or (h // factor) % self.patch_size or (w // factor) % self.patch_size:
                raise InvalidInputError(
                    f"camera frames {h}x{w} do not fit {source} (latents {factor}x smaller per "
                    f"side: {h / factor:g}x{w / factor:g}) cut into patches of patch_size {self.patch_size}"
                )
        elif h % self.patch_size or w % self.patch_size:
            raise InvalidInputError(
                f"camera frames {h}x{w} are not divisible by patch_size {self.patch_size}"
            )

    def window_spec(self, obs_keys: tuple[str, ...] | None = None) -> WindowSpec:
        """The observation history, and for each camera also the future frames (frames past an episode's
        end repeat its last frame, as the sampler pads)."""
        spec = super().window_spec(obs_keys)
        history = tuple(range(-(self.n_obs_steps - 1), 1))
        offsets = {k: (*history, *self.future_offsets) for k in self.image_keys}
        return replace(spec, key_offsets=offsets)


PRESETS: dict[str, dict] = {
    # The best recipe measured here (BENCHMARKS.md, A CNN per camera beside the DiT: 61.2% on MT10, +8.0
    # over its ablation; without camera_features 52.2% on the same 500 episodes, 55.4% with --steps 8000):
    # a first stage of 2,000 steps fits a small frame autoencoder to the store (64 px -> 4 x 16 x 16
    # latents), then a small DiT (3.3 M parameters with the per-camera CNN, ~0.6 s per batch of 64 on
    # two threads) trained from scratch on those latents with patch 2 (64 tokens per frame), one token
    # per action step, one observation frame as in PAD, a chunk of 12 actions reaching the last future
    # frame. The pixel variant: -o autoencoder_steps=0 -o patch_size=8 -o action_tokens=one.
    "cpu": {
        "n_obs_steps": 1,
        "horizon": 12,
        "n_action_steps": 8,
        "future_offsets": (4, 8, 12),
        "autoencoder_steps": 2000,
        "patch_size": 2,
        "action_tokens": "per_step",
        "camera_features": True,  # not in the paper: the actions read the cameras through a CNN too
        "hidden_dim": 192,
        "depth": 4,
        "num_heads": 4,
        "crop_ratio": 1.0,
        "shift_pad": 4,
        "num_train_timesteps": 100,
        "num_inference_steps": 10,
        "timestep_spacing": "trailing",  # the first DDIM step at the pure-noise level (architecture.md)
    },
    # The paper's DiT-XL sizes and 256 image tokens (XL/2 on 32x32 latents; here patch 4 on 64 px
    # pixels, since the paper's SD-VAE cannot be downloaded here; with your copy of it:
    # -o vae_path=DIR -o patch_size=2 on 256 px frames), its linear schedule, 75 DDIM steps.
    "paper": {
        "n_obs_steps": 1,
        "horizon": 12,
        "n_action_steps": 1,
        "future_offsets": (4, 8, 12),
        "patch_size": 4,
        "hidden_dim": 1152,
        "depth": 28,
        "num_heads": 16,
        "crop_ratio": 1.0,
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "image_prediction": "epsilon",
        "num_inference_steps": 75,
        "timestep_spacing": "trailing",
    },
}
