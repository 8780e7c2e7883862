"""The networks the online learner trains and their update rules (notes §1, §2), one function per rule.

Per environment step (`Learner.update`): `utd` critic updates, one per minibatch, each recomputing the
OTF action at s' and soft-updating the target critics; then, on the last minibatch only, one BC step of
the base policy (+ its EMA), one edit step (or the rlpd actor's) and one temperature step (notes §6,
ambiguity 6: as the official code).

Who acts where (ambiguity 5, as the code): TD targets sample the *online* base policy; acting and
evaluation sample its EMA copy; both score candidates with the *target* critics. The edit and actor
losses read the *online* critics' ensemble mean (ambiguity 3, as the code), on replay (s, a) pairs
(ambiguity 2, as the code). Optimisers as the code (ambiguity 11; our own Adam, optim.py): AdamW (weight decay 1e-4) for the base
policy and Adam for the edit policy, both on a cosine decay; Adam for critics and temperature; no
gradient clipping. TD targets carry no entropy term for EXPO (`backup_entropy` is unused in the code);
the rlpd baseline keeps SAC's. The entropy-backup variant of the paper's §4.3 (notes §1.6, ambiguity 10) is
not implemented.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from visuomotor.policies.expo.config import OnlineConfig
from visuomotor.policies.expo.diffusion import ddpm_loss
from visuomotor.policies.expo.model import soft_update, subset_min
from visuomotor.policies.expo.optim import Adam
from visuomotor.policies.expo.policy import ExpoPolicy, edit_actions, otf_select


@dataclass
class Batch:
    """One minibatch in the networks' space: features (B, F), normalised actions (B, A), rewards, masks."""

    feat: Tensor
    action: Tensor
    reward: Tensor
    next_feat: Tensor
    mask: Tensor


def td_target(reward: Tensor, mask: Tensor, discount: float, next_value: Tensor) -> Tensor:
    """y = r + gamma * mask * V(s'); mask is 0 after a terminal step and 1 after a time-limit cut."""
    return reward + discount * mask * next_value


def entropy_target(config, ocfg: OnlineConfig) -> float:
    """The temperature's target entropy. EXPO measures the entropy of the edit beta * u, whose largest
    value is |A| (log 2 + log beta); the code's -|A|/2 is out of reach for beta < ~0.3, so alpha grows
    without bound (notes §1.2). "reachable" shifts it by |A| log beta (the entropy of u at -|A|/2)."""
    A = config.action_dim
    if config.algorithm == "expo" and ocfg.entropy_target == "reachable":
        return -A / 2 + A * math.log(config.edit_scale)
    return -A / 2


def cosine_lr(base: float, update: int, total: int) -> float:
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, update / total)))


class Learner:
    """The online policy, its EMA base policy, the target critics, the temperature and the optimisers."""

    def __init__(self, policy: ExpoPolicy, ocfg: OnlineConfig) -> None:
        self.policy, self.ocfg, self.config = policy, ocfg, policy.config
        self.ema_denoiser = copy.deepcopy(policy.denoiser).requires_grad_(False).eval()
        self.target_critics = (
            copy.deepcopy(policy.critics).requires_grad_(False) if policy.critics is not None else None
        )
        policy_head = policy.edit if policy.edit is not None else policy.actor
        self.log_alpha = nn.Parameter(torch.tensor(math.log(ocfg.init_temperature))) if policy_head else None
        self.optimizers: dict[str, Adam] = {
            "base": Adam(policy.denoiser.parameters(), lr=ocfg.lr, weight_decay=ocfg.weight_decay)  # AdamW
        }
        if policy.critics is not None:
            self.optimizers["critic"] = Adam(policy.critics.parameters(), lr=ocfg.lr)
        if policy_head is not None:
            self.optimizers["policy_head"] = Adam(policy_head.parameters(), lr=ocfg.lr)
            self.optimizers["temperature"] = Adam([self.log_alpha], lr=ocfg.lr)
        self.updates = 0
        """Environment steps trained on so far: the cosine schedules' clock."""

    @property
    def alpha(self) -> Tensor:
        assert self.log_alpha is not None
        return self.log_alpha.exp()

    # ------------------------------------------------------------------ acting
    @property
    def selecting(self) -> bool:
        """OTF selection acts (the critics have trained for `critic_warmup` env steps); else, for expo
        and best_of_n, the EMA base policy acts alone (config.py, critic_warmup)."""
        return self.target_critics is not None and self.updates >= self.ocfg.critic_warmup

    @torch.no_grad()
    def act(self, feat: Tensor, explore: bool, generator: torch.Generator | None = None) -> Tensor:
        """Normalised actions as the exported checkpoint takes them (EMA base, target critics)."""
        p = self.policy
        if p.actor is not None:
            return p.actor.sample(feat, generator)[0] if explore else p.actor.mode(feat)
        sample = lambda c: p.sample_base(c, generator, denoiser=self.ema_denoiser)  # noqa: E731
        if not self.selecting:
            return sample(feat)
        assert self.target_critics is not None
        return otf_select(feat, sample, p.edit, self.target_critics, self.config, generator).action

    def export(self) -> ExpoPolicy:
        """A copy of the policy holding what acts: the EMA base policy and the target critics; during the
        critic warm-up of an OTF algorithm, the EMA base policy alone (a checkpoint that acts like BC's)."""
        out = copy.deepcopy(self.policy)
        out.denoiser.load_state_dict(self.ema_denoiser.state_dict())
        if out.critics is not None and self.target_critics is not None:
            out.critics.load_state_dict(self.target_critics.state_dict())
        if out.actor is None and out.critics is not None and not self.selecting:
            out.critics = out.edit = None
            out.config = replace(out.config, rl_heads=False)
        return out.eval()

    # ------------------------------------------------------------------ one environment step's updates
    def update(self, minibatches: list[Batch]) -> dict[str, float]:
        logs: dict[str, float] = {}
        if self.policy.critics is not None:
            for batch in minibatches:
                logs = self.critic_step(batch)
        last = minibatches[-1]
        logs |= self.bc_step(last) if self.policy.actor is None else {}
        if self.policy.edit is not None:
            logs |= self.temperature_step(self.edit_step(last))
        elif self.policy.actor is not None:
            logs |= self.temperature_step(self.actor_step(last))
        self.updates += 1
        return logs

    @torch.no_grad()
    def next_value(self, next_feat: Tensor) -> Tensor:
        """min over a random critic subset of Q'(s', a*), a* the OTF action of the online base policy
        (rlpd: a sample of its actor, minus alpha log pi, SAC's entropy backup)."""
        p, target = self.policy, self.target_critics
        assert target is not None
        if p.actor is not None:
            action, log_prob = p.actor.sample(next_feat)
            value, _ = subset_min(target(next_feat, action), self.config.num_min_qs)
            return value - self.alpha * log_prob
        action = otf_select(next_feat, p.sample_base, p.edit, target, self.config).action
        return subset_min(target(next_feat, action), self.config.num_min_qs)[0]

    def critic_step(self, batch: Batch) -> dict[str, float]:
        y = td_target(batch.reward, batch.mask, self.ocfg.discount, self.next_value(batch.next_feat))
        q = self.policy.critics(batch.feat, batch.action)  # (E, B)
        loss = (q - y).pow(2).mean()
        _step(self.optimizers["critic"], loss)
        soft_update(self.target_critics, self.policy.critics, self.ocfg.tau)
        return {"critic_loss": loss.item(), "q": q.mean().item(), "target": y.mean().item()}

    def bc_step(self, batch: Batch) -> dict[str, float]:
        p = self.policy
        _set_lr(self.optimizers["base"], cosine_lr(self.ocfg.lr, self.updates, self.ocfg.lr_decay_updates))
        p.denoiser.train()
        loss = ddpm_loss(p.denoiser, batch.action, batch.feat, p.schedule)
        _step(self.optimizers["base"], loss)
        p.denoiser.eval()
        soft_update(self.ema_denoiser, p.denoiser, self.ocfg.ema_tau)
        return {"bc_loss": loss.item()}

    def edit_step(self, batch: Batch) -> Tensor:
        """Edit policy: alpha (log pi(u) - |A| log beta) - mean_i Q_i(s, a + beta u); returns the
        entropy estimate of the edits for the temperature."""
        c, p = self.config, self.policy
        opt = self.optimizers["policy_head"]
        _set_lr(opt, cosine_lr(self.ocfg.lr, self.updates, self.ocfg.lr_decay_updates))  # the code's quirk
        edited, log_prob = edit_actions(p.edit, batch.feat, batch.action, c.edit_scale, c.clip_edited)
        log_prob = log_prob - c.action_dim * math.log(c.edit_scale)  # density of the edit beta * u
        loss = (self.alpha.detach() * log_prob - p.critics(batch.feat, edited).mean(0)).mean()
        _step(opt, loss)
        return -log_prob.detach().mean()

    def actor_step(self, batch: Batch) -> Tensor:
        """rlpd's actor: alpha log pi(a|s) - mean_i Q_i(s, a)."""
        p = self.policy
        action, log_prob = p.actor.sample(batch.feat)
        loss = (self.alpha.detach() * log_prob - p.critics(batch.feat, action).mean(0)).mean()
        _step(self.optimizers["policy_head"], loss)
        return -log_prob.detach().mean()

    def temperature_step(self, entropy: Tensor) -> dict[str, float]:
        """alpha (H_est - H_target): alpha rises while the entropy is below the target."""
        target = entropy_target(self.config, self.ocfg)
        loss = self.alpha * (entropy - target)
        _step(self.optimizers["temperature"], loss)
        return {"alpha": self.alpha.item(), "entropy": entropy.item(), "entropy_target": target}

    # ------------------------------------------------------------------ state for checkpoints
    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"policy": self.policy, "ema": self.ema_denoiser}
        if self.target_critics is not None:
            out["target"] = self.target_critics
        return out


def _step(optimizer: Adam, loss: Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _set_lr(optimizer: Adam, lr: float) -> None:
    optimizer.lr = lr
