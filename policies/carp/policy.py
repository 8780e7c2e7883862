"""CARP: Coarse-to-fine AutoRegressive Policy (Gong et al. 2024, arXiv 2412.06782).

Stage 1 trains the multi-scale action tokenizer on normalised action chunks (reconstruction + VQ loss).
Stage 2 freezes it and trains the observation encoder and the coarse-to-fine transformer with
cross-entropy on the tokenizer's codes. Both stages run in the one training loop, one after the other
(`training_stages`), and the checkpoint holds both networks. Inference: K transformer passes (one per
scale, KV-cached) and the tokenizer's decoder.

Deviations from the paper's code, and why:
- The transformer trains with the run's AdamW schedule (warmup + cosine) rather than CARP's `lin0`, and
  weight decay applies to every stage-2 parameter: one training loop serves every policy.
- The EMA of the tokenizer is kept during stage 1 but replaced by the live weights when stage 2 starts,
  so the saved (EMA) policy decodes with exactly the tokenizer stage 2 was trained against (CARP's stage 2
  also loads the non-EMA tokenizer).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visuomotor.errors import InvalidInputError
from visuomotor.policies.carp.config import CarpConfig
from visuomotor.policies.carp.model import CoarseToFineTransformer
from visuomotor.policies.carp.tokenizer import MultiScaleActionTokenizer
from visuomotor.policies.common.encoders import ObsEncoder
from visuomotor.policies.common.policy import Policy, TrainStage

STAGES = ("tokenizer", "transformer")


class CarpPolicy(Policy):
    name = "carp"
    config_class = CarpConfig
    config: CarpConfig

    def __init__(self, config: CarpConfig, stats: dict[str, Any] | None = None) -> None:
        super().__init__(config, stats)
        self.encoder = ObsEncoder(config)
        self.tokenizer = MultiScaleActionTokenizer(
            config.action_dim,
            config.horizon,
            scales=config.scales,
            codebook_size=config.codebook_size,
            code_dim=config.code_dim,
            widths=config.vae_widths,
            phi_mix=config.phi_mix,
            commitment=config.commitment,
            cosine=config.cosine_lookup,
        )
        self.transformer = CoarseToFineTransformer(
            self.encoder.out_dim,
            self.tokenizer,
            width=config.width,
            depth=config.depth,
            heads=config.heads,
            mlp_ratio=config.mlp_ratio,
            drop_path=config.drop_path,
        )
        self.stage = "transformer"  # what compute_loss trains; the training loop sets it per stage

    # ------------------------------------------------------------------ training
    def training_stages(self, total_steps: int) -> list[TrainStage]:
        c = self.config
        tok_steps = 0 if c.tokenizer_from else c.tokenizer_steps
        if total_steps <= tok_steps:
            raise InvalidInputError(
                f"CARP trains the tokenizer for tokenizer_steps={tok_steps} steps and the transformer for "
                f"the rest of the run: steps must exceed {tok_steps}, got {total_steps}"
            )
        stages = [
            TrainStage(
                "transformer",
                total_steps - tok_steps,
                ("encoder", "transformer"),
                betas=(0.9, 0.95),
                weight_decay=c.transformer_weight_decay,
            )
        ]
        if tok_steps:
            stages.insert(
                0,
                TrainStage(
                    "tokenizer",
                    tok_steps,
                    ("tokenizer",),
                    lr=c.tokenizer_lr,
                    betas=(0.5, 0.9),
                    weight_decay=0.005,
                    warmup_steps=max(1, tok_steps // 50),
                    batch_size=c.tokenizer_batch_size,
                ),
            )
        return stages

    def set_stage(self, name: str) -> None:
        if name not in STAGES:
            raise InvalidInputError(f"CARP has stages {STAGES}, not {name!r}")
        self.stage = name

    def prepare_training(self) -> None:
        """With `tokenizer_from`, take that checkpoint's tokenizer and its action normalisation (the
        codes only mean something for actions normalised the way the tokenizer saw them)."""
        if not self.config.tokenizer_from:
            return
        from visuomotor.policies import load_source_policy, require_same_fields

        where = f"tokenizer_from={self.config.tokenizer_from!r}"
        source = load_source_policy("tokenizer_from", self.config.tokenizer_from, device=str(self.device))
        if not isinstance(source, CarpPolicy):
            raise InvalidInputError(f"{where} is a '{source.name}' checkpoint, not CARP")
        tokenizer_fields = ("action_dim", "horizon", "scales", "codebook_size", "code_dim", "vae_widths")
        require_same_fields(where, self.config, source.config, (*tokenizer_fields, "cosine_lookup"))
        self.tokenizer.load_state_dict(source.tokenizer.state_dict())
        self.normalizer.scale("action").copy_(source.normalizer.scale("action"))
        self.normalizer.offset("action").copy_(source.normalizer.offset("action"))

    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.stage == "transformer":  # the tokenizer learns the demonstrated chunks as they are
            batch = self.mix_demonstrations(batch)
        actions = self.normalizer.normalize_key("action", batch["action"].float())  # (B, H, A)
        if actions.shape[1] != self.config.horizon:
            raise ValueError(
                f"batch has {actions.shape[1]} actions per window, the policy's horizon is {self.config.horizon}"
            )
        if self.stage == "tokenizer":
            recon, vq_loss, _ = self.tokenizer(actions)
            recon_loss = F.mse_loss(recon, actions)
            loss = recon_loss + vq_loss
            return loss, {"loss": loss.item(), "recon_mse": recon_loss.item(), "vq_loss": vq_loss.item()}
        targets, inputs = self.tokenizer.teacher_forcing(actions)  # frozen: computed without gradients
        cond, aux_loss = self.condition_for_training(batch)
        logits = self.transformer(cond, inputs)  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss, logs = self.with_aux_loss(loss, aux_loss, "token_loss")
        return loss, logs | {"token_acc": (logits.argmax(-1) == targets).float().mean().item()}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def predict_tokens(
        self, obs: dict[str, Any], generator: torch.Generator | None = None, use_cache: bool = True
    ) -> list[Tensor]:
        """Per-scale code indices [(B, A, p_k)] for observations (key -> (B, To, ...))."""
        return self.transformer.generate(
            self.condition(obs), self.tokenizer, self.config.top_k, generator, use_cache=use_cache
        )

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        actions = self.tokenizer.decode_indices(self.predict_tokens(obs, generator))  # (B, H, A) normalised
        return self.normalizer.unnormalize("action", actions)
