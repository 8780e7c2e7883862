"""PAD: predict future frames and actions together with one diffusion transformer (Guo et al. 2024;
architecture.md §PAD).

Training: the frames at t + `future_offsets` of every camera and the action chunk are noised with one
shared timestep; the DiT sees the noisy futures stacked on channels with the clean current frame (one
token per patch) and the noisy chunk with the current proprio state (action tokens), and predicts the
chunk's noise and the future frames (or their noise: `image_prediction`). Inference denoises both from
Gaussian noise with DDIM; the actions are executed, the predicted frames are kept for pictures
(`policy_view`, `predicted_frames`).

Deviations from the paper (the notes' CPU plan): pixels in [-1, 1] instead of SD-VAE latents unless the
user gives a local VAE (`vae_path`; no pretrained weights can be downloaded here); a small DiT trained
from scratch; a learned task embedding instead of CLIP text features unless the user gives a local text
model (`text_encoder`); epsilon-MSE with fixed variance instead of the learned-variance hybrid loss; the
clean frames as the image branch's target on pixels (`image_prediction`); and actions that are the env's
action chunk (comparable with Diffusion Policy and CARP in the same evaluator) instead of future
end-effector poses followed by a motion planner. Optional and not in the paper: `camera_features`, a
CNN per camera whose features of the current frames join the adaLN conditioning (architecture.md §PAD).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from einops import rearrange
from torch import Tensor, nn

from visuomotor.datasets.images import random_shift
from visuomotor.errors import InvalidInputError, MissingKeyError
from visuomotor.policies.common.encoders import make_backbone
from visuomotor.policies.common.policy import Policy, TrainStage
from visuomotor.policies.pad.autoencoder import FrameAutoencoder, LearnedFrames
from visuomotor.policies.pad.config import PadConfig
from visuomotor.policies.pad.frames import frame_space, from_uint8, to_uint8
from visuomotor.policies.pad.model import PadDiT
from visuomotor.policies.pad.pictures import psnr, strip
from visuomotor.policies.pad.text import encode_texts

ACTION_MASK_KEY = "action_mask"
"""Optional batch key (B,): 0 for windows of action-free (video-only) episodes, whose action loss is
masked out, so they train the image branch only."""


class TaskText(nn.Module):
    """Task index -> a trained linear map of that task's fixed text features (a buffer, checkpointed)."""

    def __init__(self, features: Tensor, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", features.float())
        self.project = nn.Linear(features.shape[1], dim)

    def forward(self, tasks: Tensor) -> Tensor:
        return self.project(self.features[tasks])


class CameraFeatures(nn.Module):
    """Every camera's observation frames -> one conditioning vector (B, dim) (`camera_features`): a CNN per
    camera, the features of each frame concatenated, a linear map to the DiT's width."""

    def __init__(self, config: PadConfig) -> None:
        super().__init__()
        c = config
        self.backbones = nn.ModuleList(
            make_backbone(c.vision_backbone, c.vision_feature_dim, c.cnn_width) for _ in c.image_keys
        )
        self.project = nn.Linear(len(c.image_keys) * c.n_obs_steps * c.vision_feature_dim, c.hidden_dim)

    def forward(self, per_camera: list[Tensor]) -> Tensor:
        """per_camera: (B, n_obs_steps, 3, H, W) pixels in [-1, 1] of each camera."""
        features = [
            net(x.flatten(0, 1)).unflatten(0, x.shape[:2]).flatten(1)  # (B, n_obs_steps * D)
            for net, x in zip(self.backbones, per_camera, strict=True)
        ]
        return self.project(torch.cat(features, dim=1))


class PadPolicy(Policy):
    name = "pad"
    config_class = PadConfig
    config: PadConfig

    def __init__(self, config: PadConfig, stats: dict[str, Any] | None = None) -> None:
        super().__init__(config, stats)
        c = config
        self.autoencoder: FrameAutoencoder | None = None
        if c.own_autoencoder:  # a submodule: trained first (or copied), checkpointed with the DiT
            self.autoencoder = FrameAutoencoder(
                c.autoencoder_channels, c.autoencoder_factor, c.autoencoder_width
            )
            self.space: Any = LearnedFrames(self.autoencoder)
        else:  # pixels, or a frozen VAE's latents (not a submodule: frames.py)
            self.space = frame_space(c.vae_path)
        self.stage = "dit"  # what compute_loss trains; the training loop sets it per stage
        h, w = self.space.grid(*c.input_shapes[c.image_keys[0]][:2])
        self.frame_channels = len(c.image_keys) * self.space.channels
        # channels of one token group: all cameras' (stacked) or one camera's (separate)
        self.groups = len(c.image_keys) if c.camera_tokens == "separate" else 1
        group_channels = self.frame_channels // self.groups
        future = group_channels * len(c.future_offsets) if c.predict_images else 0
        A, S = c.action_dim, c.state_dim
        one = c.action_tokens == "one"
        self.net = PadDiT(
            image_hw=(h, w),
            in_channels=future + group_channels * c.n_obs_steps,
            out_channels=future,
            groups=self.groups,
            patch=c.patch_size,
            action_in=c.horizon * A + S if one else A + S,
            action_out=c.horizon * A if one else A,
            n_action_tokens=1 if one else c.horizon,
            dim=c.hidden_dim,
            depth=c.depth,
            heads=c.num_heads,
        )
        self.task_embed: nn.Module | None = None
        self._fresh_text = False
        if c.use_tasks and c.text_encoder:
            self.task_embed = self._text_conditioning()
        elif c.use_tasks:
            self.task_embed = nn.Embedding(len(c.tasks), c.hidden_dim)
        self.camera_features = CameraFeatures(c) if c.camera_features else None
        schedule = {"num_train_timesteps": c.num_train_timesteps, "beta_schedule": c.beta_schedule}
        self.train_scheduler = DDPMScheduler(**schedule, clip_sample=True)  # add_noise only: one for both
        spacing = {"timestep_spacing": c.timestep_spacing}
        self.infer_scheduler = DDIMScheduler(**schedule, **spacing, clip_sample=True)  # actions: epsilon
        # Pixels live in [-1, 1], so their samples are clipped there; scaled or standardised latents do not.
        self.image_scheduler = DDIMScheduler(
            **schedule,
            **spacing,
            clip_sample=not c.latent_frames,
            prediction_type=c.image_prediction,
        )
        self.predicted_frames: np.ndarray | None = None
        """uint8 (B, len(future_offsets), cameras, H, W, 3) from the last `predict_action_chunk` of the
        episode (None until then)."""

    def _text_conditioning(self) -> nn.Module:
        """A linear map of the tasks' text features. A new run encodes the texts here (and so learns the
        features' width); a checkpoint's config has `text_dim`, and its buffer arrives with its weights."""
        c = self.config
        assert c.text_encoder
        if c.text_dim:
            features = torch.zeros(len(c.tasks), c.text_dim)
        else:
            features = encode_texts(c.text_encoder, list(c.tasks))
            c.text_dim, self._fresh_text = features.shape[1], True
        return TaskText(features, c.hidden_dim)

    def prepare_training(self) -> None:
        """A new run takes `autoencoder_from`'s frame autoencoder, and one whose config already names
        `text_dim` encodes its tasks' texts now."""
        c = self.config
        if c.autoencoder_from:
            self._reuse_autoencoder()
        if not isinstance(self.task_embed, TaskText) or self._fresh_text:
            return
        assert c.text_encoder
        features = encode_texts(c.text_encoder, list(c.tasks))
        if features.shape[1] != c.text_dim:
            raise InvalidInputError(
                f"text_encoder {c.text_encoder!r} gives {features.shape[1]}-d features, text_dim is {c.text_dim}"
            )
        self.task_embed.features.copy_(features)

    def _reuse_autoencoder(self) -> None:
        """Copy the frame autoencoder (weights and latent statistics) of the PAD run `autoencoder_from`;
        its geometry and frame size must be this run's, or the DiT would be built for other latents."""
        from visuomotor.policies import load_source_policy, require_same_fields

        c, where = self.config, f"autoencoder_from={self.config.autoencoder_from!r}"
        source = load_source_policy("autoencoder_from", c.autoencoder_from, device=str(self.device))
        if not isinstance(source, PadPolicy) or source.autoencoder is None:
            kind = (
                f"a '{source.name}' checkpoint"
                if not isinstance(source, PadPolicy)
                else "a PAD run without one"
            )
            raise InvalidInputError(
                f"{where} is {kind}: it must be a PAD run that trained a frame autoencoder"
            )
        geometry = ("autoencoder_channels", "autoencoder_factor", "autoencoder_width")
        require_same_fields(where, c, source.config, geometry)
        mine_hw = c.input_shapes[c.image_keys[0]][:2]
        theirs_hw = source.config.input_shapes[source.config.image_keys[0]][:2]
        if list(mine_hw) != list(theirs_hw):
            raise InvalidInputError(
                f"{where}: its autoencoder learned {theirs_hw[0]}x{theirs_hw[1]} frames, this run's are "
                f"{mine_hw[0]}x{mine_hw[1]}"
            )
        assert self.autoencoder is not None  # own_autoencoder
        self.autoencoder.load_state_dict(source.autoencoder.state_dict())

    # ------------------------------------------------------------------ stages
    def training_stages(self, total_steps: int) -> list[TrainStage]:
        """One stage, or with `autoencoder_steps` the frame autoencoder first, then the DiT on its latents
        (one stage again when `autoencoder_from` brings a trained autoencoder)."""
        ae_steps = 0 if self.config.autoencoder_from else self.config.autoencoder_steps
        if not ae_steps:
            return [TrainStage("dit", total_steps)]
        if total_steps <= ae_steps:
            raise InvalidInputError(
                f"PAD trains the frame autoencoder for autoencoder_steps={ae_steps} steps and the DiT for the "
                f"rest of the run: steps must exceed {ae_steps}, got {total_steps}"
            )
        optional = ("task_embed", "camera_features")
        dit = ("net", *(name for name in optional if getattr(self, name) is not None))
        return [
            TrainStage(
                "autoencoder", ae_steps, ("autoencoder",), batch_size=self.config.autoencoder_batch_size
            ),
            TrainStage("dit", total_steps - ae_steps, dit),
        ]

    def set_stage(self, name: str) -> None:
        if name not in ("autoencoder", "dit"):
            raise InvalidInputError(f"PAD has stages ('autoencoder', 'dit'), not {name!r}")
        self.stage = name

    # ------------------------------------------------------------------ inputs
    def pixels(self, obs: dict[str, Any], n_frames: int) -> list[Tensor]:
        """The first `n_frames` frames of every camera, (B, n_frames, 3, H, W) in [-1, 1]; while training,
        each camera shifted at random (DrQ) first, by one offset for all of its frames."""
        per_camera = []
        for key in self.config.image_keys:
            if key not in obs:
                raise MissingKeyError(
                    f"observation is missing '{key}'; PAD needs {list(self.config.image_keys)}"
                )
            x = from_uint8(torch.as_tensor(obs[key], device=self.device)[:, :n_frames])  # (B, T, C, H, W)
            if self.training and self.config.shift_pad:  # copies pixels, so the same before or after mapping
                x = random_shift(x, self.config.shift_pad)
            per_camera.append(x)
        return per_camera

    def frames(self, obs: dict[str, Any], n_frames: int) -> Tensor:
        """The first `n_frames` frames of every camera in the image branch's space, (B, n_frames,
        cameras * C, h, w): pixels (C = 3) or latents."""
        return self.encode_frames(self.pixels(obs, n_frames))

    def encode_frames(self, per_camera: list[Tensor]) -> Tensor:
        """`pixels`' frames -> the image branch's space, every camera on channels (B, T, cameras * C, h, w)."""
        encoded = [
            self.space.encode(x.flatten(0, 1), sample=self.training).unflatten(0, x.shape[:2])
            for x in per_camera
        ]
        return torch.cat(encoded, dim=2)

    def proprio(self, obs: dict[str, Any]) -> Tensor:
        """The normalised low-dim state of the current frame (B, S); (B, 0) without state keys."""
        now = self.config.n_obs_steps - 1
        B = obs[self.config.image_keys[0]].shape[0]
        parts = [
            self.normalizer.normalize_key(
                k, torch.as_tensor(obs[k], device=self.device)[:, now].float()
            ).flatten(1)
            for k in self.config.state_keys
        ]
        return torch.cat(parts, dim=1) if parts else torch.zeros(B, 0, device=self.device)

    def cond(self, obs: dict[str, Any], B: int) -> Tensor:
        """The task's conditioning (B, hidden_dim); zeros without task conditioning."""
        tasks = self.task_indices(obs, B)
        if self.task_embed is None or tasks is None:
            return torch.zeros(B, self.config.hidden_dim, device=self.device)
        return self.task_embed(tasks)

    def conditioning(self, obs: dict[str, Any], per_camera: list[Tensor]) -> Tensor:
        """What adaLN adds to the timestep: the task's conditioning, plus with `camera_features` the CNN
        features of the observation frames (the first n_obs_steps of `pixels`' frames, shifted alike)."""
        cond = self.cond(obs, per_camera[0].shape[0])
        if self.camera_features is None:
            return cond
        return cond + self.camera_features([x[:, : self.config.n_obs_steps] for x in per_camera])

    def action_tokens(self, noisy: Tensor, state: Tensor) -> Tensor:
        """(B, H, A) noisy chunk + (B, S) proprio -> (B, N_a, a_in) token inputs."""
        if self.config.action_tokens == "one":
            return torch.cat([noisy.flatten(1), state], dim=1)[:, None]
        return torch.cat([noisy, state[:, None].expand(-1, noisy.shape[1], -1)], dim=2)

    def denoise(self, future: Tensor | None, current: Tensor, actions: Tensor, state: Tensor, t: Tensor, cond: Tensor) -> tuple[Tensor | None, Tensor]:  # fmt: skip
        """One network pass: the future frames' prediction (`image_prediction`: the frames or their noise)
        and the noise predicted for the chunk (B, H, A)."""
        images = current if future is None else torch.cat([future, current], dim=1)
        eps_images, eps_actions = self.net(
            self.token_groups(images), self.action_tokens(actions, state), t, cond
        )
        if eps_images is not None:  # back to the futures' layout: (B, k * cameras * C, h, w)
            eps_images = rearrange(eps_images, "b m (t c) h w -> b (t m c) h w", c=self.space.channels)
        return eps_images, eps_actions.reshape(actions.shape)

    def token_groups(self, images: Tensor) -> Tensor:
        """(B, T * cameras * C, h, w) frames, time-major then camera (futures then current) -> the DiT's
        (B, M, T * C', h, w): one group with every camera on channels (C' = cameras * C), or one group per
        camera (`camera_tokens`)."""
        return rearrange(
            images, "b (t m c) h w -> b m (t c) h w", m=self.groups, c=self.frame_channels // self.groups
        )

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        To = c.n_obs_steps
        if self.stage == "autoencoder":  # every frame of the window, every camera, action-free ones too
            assert self.autoencoder is not None
            x = torch.cat([p.flatten(0, 1) for p in self.pixels(batch, To + len(c.future_offsets))])
            return self.autoencoder.reconstruction_loss(x)
        pixels = self.pixels(batch, To + len(c.future_offsets))
        frames = self.encode_frames(pixels)  # (B, To + k, F, H, W)
        B = frames.shape[0]
        current, future = frames[:, :To].flatten(1, 2), frames[:, To:].flatten(1, 2)
        actions = self.normalizer.normalize_key("action", batch["action"].float())
        t = torch.randint(0, c.num_train_timesteps, (B,), device=self.device)  # shared by both modalities
        noise_actions = torch.randn_like(actions)
        noisy_actions = self.train_scheduler.add_noise(actions, noise_actions, t)
        noise_future = torch.randn_like(future) if c.predict_images else None
        noisy_future = self.train_scheduler.add_noise(future, noise_future, t) if c.predict_images else None
        eps_future, eps_actions = self.denoise(
            noisy_future, current, noisy_actions, self.proprio(batch), t, self.conditioning(batch, pixels)
        )
        per_window = F.mse_loss(eps_actions, noise_actions, reduction="none").flatten(1).mean(1)
        mask = batch.get(ACTION_MASK_KEY)
        mask = torch.ones(B, device=self.device) if mask is None else mask.float().to(self.device)
        action_loss = (per_window * mask).sum() / mask.sum().clamp(min=1.0)
        logs = {"action_loss": action_loss.item()}
        loss = c.action_loss_weight * action_loss
        if eps_future is not None and noise_future is not None:
            target = noise_future if c.image_prediction == "epsilon" else future
            image_loss = F.mse_loss(eps_future, target)
            loss = loss + c.image_loss_weight * image_loss
            logs["image_loss"] = image_loss.item()
        logs["loss"] = loss.item()
        return loss, logs

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        return self.sample_chunk(obs, generator)

    @torch.no_grad()
    def sample_chunk(
        self, obs: dict[str, Any], generator: torch.Generator | None = None, real_future: bool = False
    ) -> Tensor:
        """The action chunk denoised jointly with the future frames (what the policy does). real_future: the
        frames are not sampled but, at every step, the window's real future frames noised to that step's
        level, as in training: the actions the network would give if its frame prediction were perfect
        (`bench frames` compares the two; `obs` must then hold the future frames, as the sampler's
        windows do)."""
        c = self.config
        k, To = len(c.future_offsets), c.n_obs_steps
        given = real_future and c.predict_images
        pixels = self.pixels(obs, To + k if given else To)
        frames = self.encode_frames(pixels)  # encoded once: current (and real future)
        current = frames[:, :To].flatten(1, 2)  # (B, To * F, H, W)
        real = frames[:, To:].flatten(1, 2) if given else None
        B, _, h, w = current.shape
        state, cond = self.proprio(obs), self.conditioning(obs, pixels)
        actions = torch.randn(B, c.horizon, c.action_dim, generator=generator, device=self.device)
        shape = (B, k * self.frame_channels, h, w)
        future = torch.randn(shape, generator=generator, device=self.device) if c.predict_images else None
        self.infer_scheduler.set_timesteps(c.num_inference_steps)
        self.image_scheduler.set_timesteps(c.num_inference_steps)
        for t in self.infer_scheduler.timesteps:
            step = t.expand(B).to(self.device)
            if real is not None and future is not None:  # `future` holds one fixed noise draw here
                future_in = self.image_scheduler.add_noise(real, future, step)
            else:
                future_in = future
            eps_future, eps_actions = self.denoise(future_in, current, actions, state, step, cond)
            actions = self.infer_scheduler.step(eps_actions, t, actions).prev_sample
            if real is None and future is not None and eps_future is not None:
                future = self.image_scheduler.step(eps_future, t, future).prev_sample
        self.predicted_frames = None if future is None or real is not None else self._to_uint8(future, k)
        return self.normalizer.unnormalize("action", actions)

    def _to_uint8(self, future: Tensor, k: int) -> np.ndarray:
        """(B, k * F, h, w) predicted frames (pixels or latents) -> uint8 (B, k, cameras, H, W, 3)."""
        B, _, h, w = future.shape
        cameras = len(self.config.image_keys)
        pixels = self.space.decode(future.reshape(B * k * cameras, -1, h, w))  # (B k cameras, 3, H, W)
        return to_uint8(pixels.unflatten(0, (B, k, cameras))).cpu().numpy()

    @torch.no_grad()
    def frame_predictions(
        self, windows: dict[str, Any], generator: torch.Generator
    ) -> dict[str, np.ndarray] | None:
        """For windows that hold the future frames (the training sampler's): the current frame, the real and
        the predicted futures of every camera, uint8: current (B, C, H, W, 3), real and predicted
        (B, k, C, H, W, 3). None for the ablation."""
        c = self.config
        if not c.predict_images:
            return None
        self.predict_action_chunk(windows, generator=generator)
        assert self.predicted_frames is not None
        frames = self._camera_frames(windows)
        To = c.n_obs_steps
        return {"current": frames[:, To - 1], "real": frames[:, To:], "predicted": self.predicted_frames}

    def _camera_frames(self, windows: dict[str, Any]) -> np.ndarray:
        """Every camera's frames of the windows (arrays, or tensors on any device), uint8 (B, T, cameras,
        H, W, 3) on the host."""
        return np.stack([torch.as_tensor(windows[k]).cpu().numpy() for k in self.config.image_keys], axis=2)

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (..., H, W, 3) through the image branch's space and back: what the DiT can see of
        them (the frames themselves on pixels)."""
        x = from_uint8(torch.from_numpy(frames.reshape(-1, *frames.shape[-3:])).to(self.device))
        out = torch.cat([self.space.decode(self.space.encode(b, sample=False)) for b in x.split(64)])
        return to_uint8(out).cpu().numpy().reshape(frames.shape)

    def training_pictures(
        self, windows: dict[str, Any], generator: torch.Generator
    ) -> tuple[str, dict[str, float], np.ndarray] | None:
        """What training records at each checkpoint (core/train.py): a file name, metrics and a picture.
        In the autoencoder stage, the reconstruction PSNR of the windows' current frames and a strip of
        [real | reconstructed] per camera: a small object the latents drop (a goal marker; architecture.md
        §PAD) shows there, not in the PSNR. In the DiT stage, the PSNR of the predicted futures, against
        copying the current frame too, and the first camera's strip of real and predicted futures; None
        then for the ablation."""
        if self.stage == "autoencoder":
            current = self._camera_frames(windows)[:, self.config.n_obs_steps - 1]
            rebuilt = self.reconstruct(current)  # (B, cameras, H, W, 3) both
            image = rearrange(np.stack([current, rebuilt], 2), "b c two h w rgb -> (b h) (c two w) rgb")
            return "autoencoder_step", {"recon_psnr": psnr(current, rebuilt)}, image
        out = self.frame_predictions(windows, generator)
        if out is None:
            return None
        copy_current = np.repeat(out["current"][:, None], out["real"].shape[1], 1)
        metrics = {
            "frame_psnr": psnr(out["real"], out["predicted"]),
            "frame_psnr_copy_current": psnr(out["real"], copy_current),
        }
        return "step", metrics, strip(out["current"][:, 0], out["real"][:, :, 0], out["predicted"][:, :, 0])

    def reset(self) -> None:
        super().reset()
        self.predicted_frames = None

    def policy_view(self, obs: Any) -> np.ndarray | None:
        """For videos: the frames the last prediction expects at t + each offset (first camera), side by
        side; grey before an episode's first prediction (a video's frames keep one size); None for the
        ablation, which predicts no frames."""
        c = self.config
        if not c.predict_images:
            return None
        if self.predicted_frames is None:
            h, w, _ = c.input_shapes[c.image_keys[0]]
            return np.full((h, w * len(c.future_offsets), 3), 128, np.uint8)
        return np.concatenate(list(self.predicted_frames[0, :, 0]), axis=1)
