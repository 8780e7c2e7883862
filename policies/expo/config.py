"""EXPO configs and presets (Dong et al. 2025; every setting comes from the shared notes
`papers/expo.md`, which read the official code at commit bbd5713).

Two dataclasses: `ExpoConfig` is the policy (its networks; saved in every checkpoint), `OnlineConfig` is
the online learner (`learner.py`: UTD, batches, temperature, evaluation; saved in the run's run.json).
Both import without torch, so the CLI's parent process can read them fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from visuomotor.configs import check_bounds
from visuomotor.errors import InvalidInputError
from visuomotor.policies.common.config import MAX_TRAIN_TIMESTEPS, PolicyConfig

ALGORITHMS = ("expo", "rlpd", "bc", "best_of_n")
"""What the online learner trains (architecture.md §EXPO): EXPO itself, and three baselines that share
its critic ensemble, data mixing and loop: RLPD-style SAC (a Gaussian actor), BC only (the base policy on
offline + online data, no critics) and best-of-N over base samples (EXPO with beta = 0: no edit policy)."""

ENTROPY_TARGETS = ("reachable", "code")
REWARD_SOURCES = ("auto", "store", "success")


@dataclass
class ExpoConfig(PolicyConfig):
    """EXPO: a DDPM base policy over single actions, a tanh-Gaussian edit policy scaled by beta, a
    LayerNorm critic ensemble and on-the-fly (OTF) selection among base and edited samples."""

    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = (
        *PolicyConfig.INFERENCE_FIELDS,
        "sampler",
        "num_samples",
    )

    # EXPO acts on single actions from the current observation (notes §1.1).
    n_obs_steps: int = 1
    """To: must be 1 (EXPO conditions on the current observation only)."""
    horizon: int = 1
    """Must be 1: the base policy models one action, not a chunk."""
    n_action_steps: int = 1
    """Must be 1."""
    action_norm: str = "identity"
    """Actions stay in the env's units (notes §1.5: no normalisation), so beta and the [-1, 1] clip of
    samples and edits are in the env's action units; a store whose actions leave [-1, 1] needs min_max."""

    algorithm: str = "expo"
    """expo, rlpd (Gaussian-actor SAC baseline), bc (base policy only) or best_of_n (argmax over N base
    samples, i.e. beta = 0 without an edit policy)."""
    rl_heads: bool = False
    """The policy holds the online learner's heads (critics, edit policy or Gaussian actor); set by the
    online learner. False (BC pretraining): acting samples the base policy; True: acting is OTF (expo,
    best_of_n) or the Gaussian actor's mean (rlpd)."""

    hidden_dim: int = 256
    """Width of the noise predictor's residual MLP (IDQL's MLPResNet)."""
    num_blocks: int = 3
    """Residual blocks of the noise predictor."""
    block_expansion: int = 4
    """Hidden size of a residual block = block_expansion * hidden_dim (notes: 1024 = 4 x 256)."""
    time_dim: int = 128
    """Learnable Fourier features of the diffusion step; an MLP (2x, 2x) with swish follows."""
    dropout: float = 0.0
    """Dropout at the start of each residual block (the notes' default 0)."""
    diffusion_steps: int = 10
    """T: DDPM noise levels, used in full when sampling."""
    beta_schedule: str = "vp"
    """vp (b_min 0.1, b_max 10, the notes' default), cosine or linear."""
    sampler: str = "ddpm"
    """Inference sampler: ddpm (ancestral, clipped to [-1, 1] at each step, as trained) or ddim (eta 0)."""

    num_samples: int = 8
    """N: base samples per OTF selection; each is also edited, so 2N candidates (N = 1 with bc)."""
    edit_scale: float = 0.1
    """beta: an edit is beta * u with u in (-1, 1)^|A| (notes §1.2: 0.05 to 0.7 by domain)."""
    edit_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of the edit policy's ReLU MLP on (state, action)."""
    clip_edited: bool = True
    """Clamp a + beta * u to [-1, 1] (ambiguity 4 of the notes: the code does not; we do, so the critics
    score the action the env executes)."""
    actor_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of the rlpd baseline's Gaussian actor on the state."""
    critic_hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of each critic (LayerNorm after every hidden layer, ReLU)."""
    num_qs: int = 10
    """Critics in the ensemble."""
    num_min_qs: int = 2
    """Size of the random subset whose minimum scores OTF candidates and TD targets."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.edit_hidden = tuple(self.edit_hidden)
        self.actor_hidden = tuple(self.actor_hidden)
        self.critic_hidden = tuple(self.critic_hidden)
        for name in ("n_obs_steps", "horizon"):
            if getattr(self, name) != 1:
                raise InvalidInputError(
                    f"{name} must be 1 for EXPO (single actions), got {getattr(self, name)}"
                )
        _one_of("algorithm", self.algorithm, ALGORITHMS)
        _one_of("beta_schedule", self.beta_schedule, ("vp", "cosine", "linear"))
        _one_of("sampler", self.sampler, ("ddpm", "ddim"))
        names = ("hidden_dim", "num_blocks", "block_expansion", "time_dim", "diffusion_steps", "num_samples")
        check_bounds(self, names, 1)
        check_bounds(self, ["diffusion_steps"], 1, MAX_TRAIN_TIMESTEPS)  # its schedule is built at load
        if self.time_dim % 2:
            raise InvalidInputError(f"time_dim must be even (cos and sin features), got {self.time_dim}")
        check_bounds(self, ["dropout"], 0, 1, open_high=True)
        if not 0.0 <= self.edit_scale <= 1.0 or (self.algorithm == "expo" and self.edit_scale == 0.0):
            raise InvalidInputError(
                f"edit_scale (beta) must be in (0, 1] for algorithm 'expo' (beta = 0 is the best_of_n "
                f"baseline: set algorithm=best_of_n), got {self.edit_scale}"
            )
        if not 1 <= self.num_min_qs <= self.num_qs:
            raise InvalidInputError(f"num_min_qs must be in [1, num_qs={self.num_qs}], got {self.num_min_qs}")
        for name in ("edit_hidden", "actor_hidden", "critic_hidden"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be non-empty positive sizes, got {getattr(self, name)}")

    @property
    def has_critics(self) -> bool:
        return self.rl_heads and self.algorithm != "bc"

    @property
    def has_edit(self) -> bool:
        return self.rl_heads and self.algorithm == "expo"

    @property
    def has_actor(self) -> bool:
        return self.rl_heads and self.algorithm == "rlpd"


@dataclass
class OnlineConfig:
    """The online learner (`learner.py`): data mixing, update-to-data ratio, optimisers, evaluation."""

    online_steps: int = 30_000
    """Environment steps in total (a resumed run continues up to this)."""
    utd: int = 20
    """Critic updates per environment step (update-to-data ratio; the notes: 20)."""
    batch_size: int = 256
    """Transitions per minibatch, half offline and half online (offline_ratio)."""
    offline_ratio: float = 0.5
    """Share of each minibatch drawn from the offline store (RLPD's symmetric sampling: 0.5)."""
    discount: float = 0.99
    """gamma."""
    tau: float = 0.005
    """Soft update rate of the target critics."""
    ema_tau: float = 0.001
    """Rate of the EMA copy of the base policy that acts (notes §1.1)."""
    lr: float = 3e-4
    """Learning rate of every optimiser (base, edit/actor, critics, temperature)."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the base policy (optax's default, which the official code uses)."""
    lr_decay_updates: int = 3_000_000
    """The base and edit policies' learning rates follow a cosine to 0 over this many of their updates."""
    init_temperature: float = 1.0
    """Initial alpha."""
    entropy_target: str = "reachable"
    """reachable: -|A|/2 + |A| log beta (the edit's entropy in u-space at -|A|/2); code: -|A|/2 as the
    official code, unreachable for beta below ~0.3, so alpha grows without bound (notes §1.2)."""
    critic_warmup: int = 0
    """Env steps, from the start of online training, during which acting, evaluation and the exported
    policy use the EMA base policy alone while the critics (and edit policy) train; OTF selection starts
    after (expo and best_of_n; the notes have none). Why: a critic after a few hundred updates ranks
    candidates worse than chance, so OTF made an early dip (architecture.md §EXPO)."""
    random_steps: int = 5000
    """Uniform-random env steps before learning when the base policy is not pretrained (no --init); a
    run from --init acts with its policy from the first step (notes §1.5)."""
    max_episode_steps: int = 0
    """Episode limit of the online env (a truncation, bootstrapped through); 0: the env's default."""
    eval_every: int = 5000
    """Evaluate every N env steps (and at 0 and at the end); 0: only at 0 and at the end."""
    eval_episodes: int = 10
    """Episodes per evaluation, on the evaluation seeds (architecture.md §Evaluation); 0 disables."""
    save_every: int = 2000
    """Checkpoint at the first episode end after every N env steps (and at the end)."""
    log_every: int = 500
    """Record training scalars every N env steps."""
    seed: int = 0
    """Seed of the networks, batches, exploration and training episodes."""
    reward_source: str = "auto"
    """Offline rewards: store (its 'next.reward' and 'next.terminated'), success (reward 1 at the last
    frame of an episode whose metadata says success, and terminal there: stores collected with episodes
    that end at the first success) or auto (store if it has 'next.reward', else success if it can)."""
    keep_checkpoints: int = 2
    """Step checkpoints kept besides best and last."""
    threads: int = 1
    """torch threads of the learner (0: torch's default). The cpu preset's networks gain nothing from a
    second thread, and on a busy 2-core machine a second OpenMP thread made a critic update 40x slower
    (measured: 1.6 s against 40 ms; architecture.md §EXPO)."""

    def __post_init__(self) -> None:
        if not 1 <= self.utd <= 1000:
            raise InvalidInputError(f"utd (updates per env step) must be in [1, 1000], got {self.utd}")
        check_bounds(self, ["online_steps", "batch_size", "save_every", "log_every", "lr_decay_updates"], 1)
        check_bounds(
            self,
            ["critic_warmup", "random_steps", "max_episode_steps", "eval_every", "eval_episodes", "threads"],
            0,
        )
        check_bounds(self, ["offline_ratio"], 0, 1, open_high=True)
        check_bounds(self, ["discount", "tau", "ema_tau"], 0, 1, open_low=True)
        if self.lr <= 0 or self.init_temperature <= 0 or self.weight_decay < 0:
            raise InvalidInputError(
                f"lr and init_temperature must be positive and weight_decay >= 0, got lr={self.lr}, "
                f"init_temperature={self.init_temperature}, weight_decay={self.weight_decay}"
            )
        _one_of("entropy_target", self.entropy_target, ENTROPY_TARGETS)
        _one_of("reward_source", self.reward_source, REWARD_SOURCES)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # The notes' §6 2-core mini configuration: ResNet-MLP 128 wide, 2 blocks, 2x expansion, T = 5;
    # N = 4 (+ 4 edited); 5 critics (128, 128), min over 2; edit policy (128, 128).
    "cpu": {
        "hidden_dim": 128,
        "num_blocks": 2,
        "block_expansion": 2,
        "time_dim": 32,
        "diffusion_steps": 5,
        "num_samples": 4,
        "edit_scale": 0.1,
        "edit_hidden": (128, 128),
        "actor_hidden": (128, 128),
        "critic_hidden": (128, 128),
        "num_qs": 5,
        "num_min_qs": 2,
    },
    # The published settings (notes §1): 3 blocks of 1024 on 256, T = 10, N = 8, 10 critics (256 x 3),
    # min over 2 (Robomimic, MimicGen); beta 0.1 as the square script with pretraining.
    "paper": {
        "hidden_dim": 256,
        "num_blocks": 3,
        "block_expansion": 4,
        "time_dim": 128,
        "diffusion_steps": 10,
        "num_samples": 8,
        "edit_scale": 0.1,
        "edit_hidden": (256, 256, 256),
        "actor_hidden": (256, 256, 256),
        "critic_hidden": (256, 256, 256),
        "num_qs": 10,
        "num_min_qs": 2,
    },
}

ONLINE_PRESETS: dict[str, dict[str, Any]] = {
    # Notes §6: batch 128, UTD 2-4 (we take 2: about 0.1 s an env step measured on the busy 2-core machine,
    # so 20,000 steps should take about half an hour; architecture.md §EXPO); episodes cut to 150 steps.
    "cpu": {
        "online_steps": 20_000,
        "utd": 2,
        "batch_size": 128,
        "max_episode_steps": 150,
        "random_steps": 2000,
        "critic_warmup": 1000,  # 2,000 critic updates at UTD 2 before OTF acts (architecture.md §EXPO)
        "eval_every": 5000,
        "eval_episodes": 10,
        "save_every": 2000,
    },
    # Notes §1.5: UTD 20, batch 256 (128 + 128), 5,000 random steps without pretraining, 1M env steps,
    # 100 evaluation episodes; no critic warm-up (the notes have none).
    "paper": {
        "online_steps": 1_000_000,
        "utd": 20,
        "batch_size": 256,
        "max_episode_steps": 0,
        "random_steps": 5000,
        "eval_every": 10_000,
        "eval_episodes": 100,
        "save_every": 10_000,
        "threads": 0,
    },
}
