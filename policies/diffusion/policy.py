"""Diffusion Policy: DDPM training on action chunks, DDPM or DDIM sampling (Chi et al. 2023).

Schedules come from diffusers; the network is `model.ConditionalUnet1D`. Observations condition the
denoiser globally (FiLM), as in DP's `obs_as_global_cond=True` configuration.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor

from visuomotor.policies.common.encoders import ObsEncoder
from visuomotor.policies.common.policy import Policy
from visuomotor.policies.diffusion.config import DiffusionConfig
from visuomotor.policies.diffusion.model import ConditionalUnet1D


class DiffusionPolicy(Policy):
    name = "diffusion"
    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, stats: dict[str, Any] | None = None) -> None:
        super().__init__(config, stats)
        self.encoder = ObsEncoder(config)
        self.unet = ConditionalUnet1D(
            config.action_dim,
            self.encoder.out_dim,
            step_embed_dim=config.step_embed_dim,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
        )
        schedule = dict(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
            clip_sample=config.clip_sample,
            timestep_spacing=config.timestep_spacing,
        )
        self.train_scheduler = DDPMScheduler(**schedule)
        self.infer_scheduler = (DDIMScheduler if config.sampler == "ddim" else DDPMScheduler)(**schedule)

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        batch = self.mix_demonstrations(batch)
        cond, aux_loss = self.condition_for_training(batch)
        actions = self.normalizer.normalize_key("action", batch["action"].float())  # (B, H, A)
        if actions.shape[1] != self.config.horizon:
            raise ValueError(
                f"batch has {actions.shape[1]} actions per window, the policy's horizon is "
                f"{self.config.horizon}"
            )
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.train_scheduler.add_noise(actions, noise, t)
        pred = self.unet(noisy, t, cond)  # (B, H, A)
        target = noise if self.config.prediction_type == "epsilon" else actions
        return self.with_aux_loss(F.mse_loss(pred, target), aux_loss, "diffusion_loss")

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        cond = self.condition(obs)
        B = cond.shape[0]
        x = torch.randn(
            B, self.config.horizon, self.config.action_dim, generator=generator, device=cond.device
        )
        self.infer_scheduler.set_timesteps(self.config.num_inference_steps)
        for t in self.infer_scheduler.timesteps:
            eps = self.unet(x, t.expand(B).to(cond.device), cond)
            x = self.infer_scheduler.step(eps, t, x, generator=generator).prev_sample
        return self.normalizer.unnormalize("action", x)  # (B, H, A)
