"""The EXPO policy behind the Policy API (architecture.md §EXPO).

`compute_loss` is the base policy's DDPM behaviour-cloning loss on single actions, so the one offline
training loop (`visuomotor train --policy expo`) BC-pretrains it. Acting depends on what the checkpoint
holds: after BC only (`rl_heads` false) a base sample; after online training the on-the-fly (OTF)
selection among N base samples and their N edits, scored by the minimum over a random subset of the
critics (notes §1.3), or the Gaussian actor's mean for the rlpd baseline. A checkpoint the online
learner exports holds the EMA base policy and the target critics, exactly what the learner acts with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.encoders import ObsEncoder
from visuomotor.policies.common.policy import Policy, TrainStage
from visuomotor.policies.expo import diffusion
from visuomotor.policies.expo.config import ExpoConfig
from visuomotor.policies.expo.model import CriticEnsemble, NoisePredictor, TanhGaussian, subset_min


@dataclass(frozen=True)
class Selection:
    """One OTF selection: the chosen action (B, A), every candidate (B, K, A; the N base samples, then
    their N edits), the subset-minimum value of each (B, K) and the critics of the subset."""

    action: Tensor
    candidates: Tensor
    values: Tensor
    subset: Tensor


def edit_actions(
    edit: TanhGaussian, cond: Tensor, actions: Tensor, scale: float, clip: bool, generator=None
) -> tuple[Tensor, Tensor]:
    """(a + scale * u, log pi(u | s, a)) with u from the edit policy; clamped to [-1, 1] with `clip`."""
    u, log_prob = edit.sample(torch.cat([cond, actions], dim=-1), generator)
    edited = actions + scale * u
    return (edited.clamp(-1.0, 1.0) if clip else edited), log_prob


def otf_select(
    cond: Tensor,
    sample_base: Callable[[Tensor], Tensor],
    edit: TanhGaussian | None,
    critics: CriticEnsemble,
    config: ExpoConfig,
    generator: torch.Generator | None = None,
) -> Selection:
    """argmax over N base samples (and, with an edit policy, their N edits) of the minimum of a random
    subset of `num_min_qs` critics (notes §1.3). `sample_base` maps conditions (M, F) to actions (M, A)."""
    B, N = cond.shape[0], config.num_samples
    cond_n = cond.repeat_interleave(N, dim=0)  # (B*N, F), sample i of state b at row b*N + i
    base = sample_base(cond_n)
    parts = [base.view(B, N, -1)]
    if edit is not None:
        edited, _ = edit_actions(edit, cond_n, base, config.edit_scale, config.clip_edited, generator)
        parts.append(edited.view(B, N, -1))
    candidates = torch.cat(parts, dim=1)  # (B, K, A)
    K = candidates.shape[1]
    q = critics(cond.repeat_interleave(K, dim=0), candidates.reshape(B * K, -1))  # (E, B*K)
    values, subset = subset_min(q, config.num_min_qs, generator)
    values = values.view(B, K)
    best = values.argmax(dim=1)
    return Selection(candidates[torch.arange(B), best], candidates, values, subset)


class ExpoPolicy(Policy):
    name = "expo"
    config_class = ExpoConfig
    config: ExpoConfig

    def __init__(self, config: ExpoConfig, stats: dict[str, Any] | None = None) -> None:
        super().__init__(config, stats)
        self.encoder = ObsEncoder(config)
        cond, A = self.encoder.out_dim, config.action_dim
        self.denoiser = NoisePredictor(
            A,
            cond,
            config.hidden_dim,
            config.num_blocks,
            config.block_expansion,
            config.time_dim,
            config.dropout,
        )
        self.schedule = diffusion.Schedule.make(config.beta_schedule, config.diffusion_steps)
        self.action_stats = dict(stats["action"]) if stats and "action" in stats else None
        # Heads exist only in checkpoints of the online learner (architecture.md §EXPO), so a BC checkpoint
        # holds the base policy alone and acts with it.
        self.critics = (
            CriticEnsemble(cond + A, config.critic_hidden, config.num_qs) if config.has_critics else None
        )
        self.edit = TanhGaussian(cond + A, config.edit_hidden, A) if config.has_edit else None
        self.actor = TanhGaussian(cond, config.actor_hidden, A) if config.has_actor else None

    # ------------------------------------------------------------------ training (BC)
    def training_stages(self, total_steps: int) -> list[TrainStage]:
        # The offline loop trains the base policy only; the critics and edit policy learn online.
        return [TrainStage("bc", total_steps, modules=("encoder", "denoiser"))]

    def prepare_training(self) -> None:
        """Refuse a store whose actions leave [-1, 1] when actions are not normalised: the sampler clips
        to [-1, 1], so such a policy could never produce them."""
        if self.config.action_norm != "identity" or self.action_stats is None:
            return
        lo, hi = min(self.action_stats["min"]), max(self.action_stats["max"])
        if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
            raise InvalidInputError(
                f"action_norm: the store's actions span [{lo:.3g}, {hi:.3g}]; EXPO samples in [-1, 1], so "
                "with action_norm=identity actions must lie in [-1, 1]; set -o action_norm=min_max"
            )

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        batch = self.mix_demonstrations(batch)
        cond = self.condition(batch)
        actions = batch["action"].float()
        if actions.shape[1] != 1:
            raise ValueError(f"batch has {actions.shape[1]} actions per window; EXPO models one (horizon 1)")
        target = self.normalizer.normalize_key("action", actions[:, 0])
        loss = diffusion.ddpm_loss(self.denoiser, target, cond, self.schedule)
        return loss, {"loss": loss.item()}

    # ------------------------------------------------------------------ acting
    def features(self, obs: dict[str, Tensor]) -> Tensor:
        """Conditioning (B, F) of single-step observations (key -> (B, ...)): what every network reads."""
        return self.condition({k: v[:, None] for k, v in obs.items()})

    def sample_base(self, cond: Tensor, generator: torch.Generator | None = None, denoiser=None) -> Tensor:
        """Base-policy actions (B, A), normalised, in [-1, 1]."""
        model = self.denoiser if denoiser is None else denoiser
        c = self.config
        return diffusion.sample(model, cond, c.action_dim, self.schedule, c.sampler, generator)

    def act(self, cond: Tensor, generator: torch.Generator | None = None, explore: bool = False) -> Tensor:
        """Normalised actions (B, A): OTF with critics, else a base sample; the rlpd actor samples while
        exploring and acts with its mean otherwise (jaxrl's eval_actions)."""
        if self.actor is not None:
            return self.actor.sample(cond, generator)[0] if explore else self.actor.mode(cond)
        if self.critics is None:
            return self.sample_base(cond, generator)
        return self.select(cond, generator).action

    def select(self, cond: Tensor, generator: torch.Generator | None = None) -> Selection:
        if self.critics is None:
            raise RuntimeError("OTF selection needs critics (a checkpoint of the online learner)")
        return otf_select(
            cond, lambda c: self.sample_base(c, generator), self.edit, self.critics, self.config, generator
        )

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        action = self.act(self.condition(obs), generator)
        return self.normalizer.unnormalize("action", action)[:, None]  # (B, 1, A)
