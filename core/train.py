"""The one training loop for every policy (architecture.md §Layout).

    store -> SequenceSampler -> policy.compute_loss -> AdamW (warmup + cosine, grad clip) -> EMA
          -> periodic rollout evaluation -> atomic best/last checkpoints -> exact resume

Exact resume: the batch of step s is drawn from a generator seeded with (seed, s, rank), and the torch
RNG state (noise, crops) is saved with every checkpoint, so a run restarted from step s repeats what the
uninterrupted run did from s on. Distributed data parallel runs under torchrun (gloo on CPU, nccl on
GPU): each rank draws its own slice of the global batch; rank 0 alone writes.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visuomotor.checkpoint import (
    load_training_state,
    point_link,
    save_training_checkpoint,
    update_training_state,
)
from visuomotor.configs import apply_overrides, check_bounds, from_dict, to_dict
from visuomotor.errors import InvalidInputError, MissingPathError, PathExistsError
from visuomotor.rundir import RunDir, pretrained_model
from visuomotor.video_data import VideoWindows, mix_video, open_video

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpointing of a run."""

    steps: int = 3000
    """Gradient steps in total (a resumed run continues up to this)."""
    batch_size: int = 64
    """Windows per step (per process under DDP)."""
    lr: float = 1e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    warmup_steps: int = 500
    """Linear warmup before the cosine decay."""
    grad_clip: float = 1.0
    """Max global gradient norm; 0 disables clipping."""
    ema: bool = True
    """Keep an exponential moving average of the weights and evaluate/save it (DP's EMAModel)."""
    ema_power: float = 0.75
    """EMA warmup: decay = 1 - (1 + step)^-power, capped at ema_max_decay."""
    ema_max_decay: float = 0.9999
    """Largest EMA decay."""
    save_every: int = 500
    """Write a checkpoint every N steps (and at the end)."""
    log_every: int = 50
    """Log scalars every N steps."""
    eval_every: int = 0
    """Roll the policy out every N steps (0: only at the end if eval_episodes > 0)."""
    eval_episodes: int = 0
    """Rollout episodes per task at each evaluation; 0 disables rollouts."""
    eval_env: str = ""
    """Env id for rollouts; default: the store's env id."""
    eval_workers: int = 2
    """Processes for rollouts."""
    val_ratio: float = 0.0
    """Fraction of episodes held out for a validation loss."""
    seed: int = 0
    """Seed for initialisation, batches and noise."""
    keep_checkpoints: int = 2
    """Step checkpoints kept besides best and last."""
    video_data: str = ""
    """An episode store of action-free video to co-train frame prediction on (PAD; `--video-data`)."""
    video_fraction: float = 0.3
    """Share of each batch drawn from `video_data` (PAD's code: 0.3)."""

    def __post_init__(self) -> None:
        check_bounds(self, ["steps", "batch_size", "save_every", "log_every"], 1)
        check_bounds(self, ["video_fraction", "val_ratio"], 0, 1, open_high=True)
        if self.lr <= 0:
            raise InvalidInputError(f"lr must be positive, got {self.lr}")


REMOVED_TRAIN_FIELDS = ("num_workers",)
"""Fields older runs recorded that no longer exist (never read); dropped so those runs still resume."""

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "save_every": 500},
    # DP paper: lr 1e-4, batch 64 (256 for state tasks), 500 warmup steps; ~3000 epochs on GPU.
    "paper": {"steps": 200_000, "batch_size": 64, "lr": 1e-4, "warmup_steps": 500, "save_every": 10_000},
    # State-based paper settings (DP and CARP state tasks: batch 256, lr 1e-4).
    "paper_state": {
        "steps": 200_000,
        "batch_size": 256,
        "lr": 1e-4,
        "warmup_steps": 500,
        "save_every": 10_000,
    },
}

# Image policies train longer by default: on 3 MT10 tasks from 64 px images, Diffusion Policy's cpu preset
# reached 58.9% after 6,000 steps against 40.0% after 2,000 (BENCHMARKS.md, Vision A/B round 2); state
# policies are trained by 3,000. Used when the run sees a camera and no step count is given.
IMAGE_STEPS: dict[str, int] = {"cpu": 6000}


def preset_train_config(preset: str, config: Any) -> TrainConfig:
    """The training settings of `preset` for a policy config: longer for one that sees a camera."""
    fields = dict(TRAIN_PRESETS[preset])
    if config.image_keys and preset in IMAGE_STEPS:
        fields["steps"] = IMAGE_STEPS[preset]
    return TrainConfig(**fields)


# ---------------------------------------------------------------------------------------------- helpers
def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, power: float, max_decay: float) -> None:
    decay = min(max_decay, max(0.0, 1.0 - (1.0 + step) ** -power))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def batch_indices(n_windows: int, batch_size: int, seed: int, step: int, rank: int) -> np.ndarray:
    """The windows of `step` for `rank`: a pure function of its arguments (this is what makes resume exact)."""
    return np.random.default_rng([seed, step, rank]).integers(0, n_windows, batch_size)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def describe_inputs(config: Any) -> str:
    """What a policy sees, in one line: each input key with its frame shape, and the task conditioning."""
    parts = [f"{key} {'x'.join(map(str, config.input_shapes[key]))}" for key in config.input_keys]
    if config.use_tasks:
        parts.append(f"task ({len(config.tasks)} tasks)")
    if config.aux_target_key:
        parts.append(f"auxiliary target {config.aux_target_key} (training only)")
    return ", ".join(parts)


def _check_store_matches(config: Any, store: Any) -> None:
    for key in (*config.training_keys, "action"):
        if key not in store.keys:
            raise InvalidInputError(
                f"{store.path}: the policy needs '{key}' but the store has only {store.keys}"
            )
    for key, shape in config.input_shapes.items():
        if key in store.keys and list(store.shape(key)) != list(shape):
            raise InvalidInputError(
                f"{store.path}: '{key}' has frame shape {list(store.shape(key))}, the policy config expects "
                f"{list(shape)}"
            )
    if config.action_dim and store.shape("action") != (config.action_dim,):
        raise InvalidInputError(
            f"{store.path}: 'action' has shape {list(store.shape('action'))}, the policy expects "
            f"[{config.action_dim}]"
        )


# ---------------------------------------------------------------------------------------------- the run
def train(
    policy_name: str,
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "cpu",
    policy_overrides: dict[str, str] | None = None,
    train_overrides: dict[str, str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) a run in `out`; returns a summary (also written to out/summary.json).

    The steps: settle the configs (new or resumed), open the data, build the policy and its stage
    schedule, restore a resumed run, then train step by step, logging, checkpointing and evaluating.
    """
    run_dir = RunDir(Path(out))
    rank, world = _dist_info()
    if resume:
        config, tcfg, data = _resumed_configs(run_dir, policy_name, train_overrides)
    else:
        config, tcfg = _new_configs(run_dir, policy_name, preset, policy_overrides, train_overrides)
    store, sampler, val_sampler, stats = _open_data(config, tcfg, data, resume, rank)
    video = open_video(config, tcfg.video_data, resume) if tcfg.video_data else None  # before the policy
    if rank == 0:
        log.info("inputs: %s", describe_inputs(config))
    policy, ema_policy, schedule = _build_policy(policy_name, config, tcfg, stats, resume, store.attrs)
    if resume:
        start_step, stage, best, history = _restore(run_dir, policy, ema_policy, schedule, tcfg, rank)
    else:
        start_step, stage, best, history = 0, schedule.start(0), None, []
    run = _Run(
        dir=run_dir,
        policy_name=policy_name,
        config=config,
        tcfg=tcfg,
        policy=policy,
        ema_policy=ema_policy,
        schedule=schedule,
        stage=stage,
        is_main=rank == 0,
        store=store,
        sampler=sampler,
        val_sampler=val_sampler,
        best=best,
        history=history,
        video=video,
    )
    model = _distributed(policy, world, config.device, len(schedule.stages))
    if run.is_main:
        _write_run_json(run_dir, policy_name, preset, data, config, tcfg, world, schedule)
        run.writer = _tensorboard(run_dir.root)

    seconds = _steps(run, model, start_step, rank, world, progress)
    return _finish(run, world, seconds)


def _steps(run: _Run, model: nn.Module, start_step: int, rank: int, world: int, progress: bool) -> float:
    """The training steps from `start_step` to the end: one optimiser step each, a stage switch where
    the schedule says, logs, checkpoints and evaluations when due. Returns the seconds they took."""
    from tqdm import tqdm

    tcfg = run.tcfg
    bar = tqdm(
        total=tcfg.steps,
        initial=start_step,
        desc=f"train {run.policy_name}",
        disable=not (progress and run.is_main),
    )
    t0, losses = time.perf_counter(), []
    run.policy.train()
    for step in range(start_step, tcfg.steps):
        index = run.schedule.index_at(step)
        if index != run.stage.index:
            run.stage = run.schedule.start(index)
            losses = []  # do not average the new stage's loss with the old one's
        loss, logs, grad_norm = _train_step(run, model, step, rank)
        losses.append(loss)
        done = step + 1
        bar.update(1)
        if run.is_main and (done % tcfg.log_every == 0 or done == tcfg.steps):
            entry = _log_entry(run, done, losses, logs, grad_norm, time.perf_counter() - t0)
            losses = []
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
        rng_states = _rank_rng_states(world) if _checkpoint_due(tcfg, done) else None
        if run.is_main:
            _checkpoint_and_evaluate(run, done, rng_states)
        run.policy.train()
    bar.close()
    return time.perf_counter() - t0


@dataclass
class _Stage:
    """The optimiser side of the training stage being run."""

    index: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[nn.Parameter]


class StageSchedule:
    """A policy's training stages laid end to end over the run (CARP: tokenizer, then transformer).

    Each stage has its own optimiser and warmup + cosine schedule over the parameters it trains. The
    stages are a pure function of the config and the step count, which resume relies on.
    """

    def __init__(self, policy: nn.Module, ema_policy: nn.Module, tcfg: TrainConfig, name: str) -> None:
        self.policy, self.ema_policy, self.tcfg = policy, ema_policy, tcfg
        self.stages = policy.training_stages(tcfg.steps)
        self.starts = [0, *itertools.accumulate(s.steps for s in self.stages)][:-1]
        if sum(s.steps for s in self.stages) != tcfg.steps:
            raise InvalidInputError(
                f"{name}: stages {[s.name for s in self.stages]} do not add up to {tcfg.steps} steps"
            )

    def index_at(self, step: int) -> int:
        return max(i for i, start in enumerate(self.starts) if start <= step)

    def batch_size(self, index: int) -> int:
        return self.stages[index].batch_size or self.tcfg.batch_size

    def start(self, index: int) -> _Stage:
        stage, tcfg = self.stages[index], self.tcfg
        self.policy.set_stage(stage.name)
        self.ema_policy.set_stage(stage.name)
        params = (
            [p for m in stage.modules for p in self.policy.get_submodule(m).parameters()]
            if stage.modules
            else list(self.policy.parameters())
        )
        opt = torch.optim.AdamW(
            params,
            lr=tcfg.lr if stage.lr is None else stage.lr,
            betas=stage.betas,
            weight_decay=tcfg.weight_decay if stage.weight_decay is None else stage.weight_decay,
        )
        warmup = tcfg.warmup_steps if stage.warmup_steps is None else stage.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup, stage.steps))
        return _Stage(index, opt, scheduler, params)


@dataclass
class _Run:
    """What the steps of `train` share."""

    dir: RunDir
    policy_name: str
    config: Any
    tcfg: TrainConfig
    policy: Any
    ema_policy: Any
    schedule: StageSchedule
    stage: _Stage
    is_main: bool
    store: Any
    sampler: Any
    val_sampler: Any
    best: dict[str, Any] | None
    history: list[dict[str, Any]]
    video: VideoWindows | None = None
    writer: Any = None


def _resumed_configs(
    run_dir: RunDir, policy_name: str, train_overrides: dict[str, str] | None
) -> tuple[Any, TrainConfig, str]:
    """The configs and store a run was started with (train fields may be overridden, e.g. steps)."""
    from visuomotor.policies import get_policy_entry

    if not run_dir.last.exists():
        raise MissingPathError(f"{run_dir.root}: nothing to resume (no checkpoints/last)")
    saved = json.loads(run_dir.run_json.read_text())
    if saved["policy"] != policy_name:
        raise InvalidInputError(f"{run_dir.root} is a '{saved['policy']}' run, not '{policy_name}'")
    config_cls = get_policy_entry(policy_name).load()[1]
    where = str(run_dir.run_json)
    config = from_dict(config_cls, saved["policy_config"], where=f"{where}:policy_config")
    saved_train = {k: v for k, v in saved["train_config"].items() if k not in REMOVED_TRAIN_FIELDS}
    tcfg = apply_overrides(from_dict(TrainConfig, saved_train, where=where), train_overrides or {})
    return config, tcfg, saved["data"]


def _new_configs(
    run_dir: RunDir,
    policy_name: str,
    preset: str,
    policy_overrides: dict[str, str] | None,
    train_overrides: dict[str, str] | None,
) -> tuple[Any, TrainConfig]:
    """The configs of a new run: the preset plus the overrides."""
    from visuomotor.policies import get_policy_entry

    _, config_cls, presets = get_policy_entry(policy_name).load()
    if run_dir.checkpoints.exists():
        raise PathExistsError(
            f"{run_dir.root} already holds a run; pass --resume to continue it or choose a new --out"
        )
    if preset not in presets or preset not in TRAIN_PRESETS:
        raise InvalidInputError(
            f"unknown preset {preset!r}; presets: {sorted(set(presets) & set(TRAIN_PRESETS))}"
        )
    config = apply_overrides(config_cls(**presets[preset]), policy_overrides or {})
    return config, apply_overrides(preset_train_config(preset, config), train_overrides or {})


def _open_data(
    config: Any, tcfg: TrainConfig, data: str | Path, resume: bool, rank: int
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The store, the training and validation samplers, and the normalisation statistics; a new run's
    config takes its shapes and tasks from the store."""
    from visuomotor.datasets import EpisodeStore, SequenceSampler, split_episodes
    from visuomotor.datasets.stats import load_stats

    store = EpisodeStore.open(data)
    if store.num_episodes == 0:
        raise InvalidInputError(f"{data}: the store has no episodes")
    conversion = store.attrs.get("conversion") or {}
    if conversion.get("complete") is False:
        raise InvalidInputError(
            f"{data}: its conversion from {conversion.get('source')} did not finish ({store.num_episodes} of "
            f"{conversion.get('episodes')} episodes); run the same `visuomotor dataset convert` again to resume it"
        )
    if "action" not in store.keys:
        raise InvalidInputError(
            f"{data}: the store holds no actions (action-free video?); train on a store with actions and "
            "give this one with --video-data (PAD)"
        )
    _check_store_matches(config, store)
    if not resume:
        config.input_shapes = {k: list(store.shape(k)) for k in config.training_keys}
        config.action_dim = int(store.shape("action")[0])
        config.tasks = store.tasks if len(store.tasks) > 1 else []
    config.validate_inputs()
    torch.manual_seed(tcfg.seed + rank)  # before the policy's weights are drawn
    train_eps, val_eps = split_episodes(store.num_episodes, tcfg.val_ratio, tcfg.seed)
    spec = config.window_spec()
    sampler = SequenceSampler(store, spec, episodes=train_eps)
    val_sampler = SequenceSampler(store, spec, episodes=val_eps) if len(val_eps) else None
    if len(sampler) == 0:
        raise InvalidInputError(
            f"{data}: no training windows (episodes too short for horizon {config.horizon}?)"
        )
    return store, sampler, val_sampler, load_stats(store, [*config.training_keys, "action"])


def _build_policy(
    policy_name: str,
    config: Any,
    tcfg: TrainConfig,
    stats: dict[str, Any],
    resume: bool,
    store_attrs: dict[str, Any],
) -> tuple[Any, Any, StageSchedule]:
    """The policy, its EMA copy (the policy itself without EMA) and its stage schedule."""
    from visuomotor.policies import get_policy_entry
    from visuomotor.policies.common.saved import dataset_facts

    policy = get_policy_entry(policy_name).load()[0](config, stats).to(config.device)
    policy.dataset = dataset_facts(store_attrs)
    if not resume:
        policy.prepare_training()
    ema_policy = copy.deepcopy(policy).eval() if tcfg.ema else policy
    return policy, ema_policy, StageSchedule(policy, ema_policy, tcfg, policy_name)


def _restore(
    run_dir: RunDir, policy: Any, ema_policy: Any, schedule: StageSchedule, tcfg: TrainConfig, rank: int
) -> tuple[int, _Stage, dict[str, Any] | None, list[dict[str, Any]]]:
    """Load the last checkpoint's weights, optimiser, schedule and this rank's RNG. Returns the step to
    go on from, its stage, and the best checkpoint and history so far."""
    from safetensors.torch import load_model

    ckpt = run_dir.last.resolve()
    state, weights, opt_state = load_training_state(ckpt)
    policy.load_state_dict(weights)
    if tcfg.ema:
        load_model(ema_policy, str(pretrained_model(ckpt) / "model.safetensors"))
    step = state["step"]
    stage = schedule.start(schedule.index_at(min(step, tcfg.steps - 1)))
    # The saved optimiser belongs to the stage of the last step taken; at a stage boundary the new
    # stage starts fresh, exactly as the uninterrupted run did.
    if schedule.index_at(step - 1) == stage.index:
        stage.optimizer.load_state_dict(opt_state)
        stage.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"][min(rank, len(state["torch_rng"]) - 1)])
    log.info("resumed %s at step %d", run_dir.root, step)
    return step, stage, state.get("best"), state.get("history", [])


def _distributed(policy: nn.Module, world: int, device: str, n_stages: int) -> nn.Module:
    """The module the loop calls: the policy, or its DDP wrapper under torchrun."""
    if world == 1:
        return policy
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo" if device == "cpu" else "nccl")
    # Multi-stage policies leave the other stages' parameters out of the graph.
    return nn.parallel.DistributedDataParallel(policy, find_unused_parameters=n_stages > 1)


def _write_run_json(
    run_dir: RunDir,
    name: str,
    preset: str,
    data: str | Path,
    config: Any,
    tcfg: TrainConfig,
    world: int,
    schedule: StageSchedule,
) -> None:
    run_dir.root.mkdir(parents=True, exist_ok=True)
    record = {
        "policy": name,
        "preset": preset,
        "data": str(Path(data).resolve()),
        "policy_config": to_dict(config),
        "train_config": to_dict(tcfg),
        # A stage may train on its own batch size (CARP's tokenizer, PAD's autoencoder): per-sample figures
        # (bench train's samples/s) need the stage's, not train_config's.
        "stages": [
            {"name": stage.name, "steps": stage.steps, "batch_size": schedule.batch_size(i)}
            for i, stage in enumerate(schedule.stages)
        ],
        "world_size": world,
    }
    run_dir.run_json.write_text(json.dumps(record, indent=2))


def _train_step(run: _Run, model: nn.Module, step: int, rank: int) -> tuple[float, dict[str, float], float]:
    """One optimiser step on the batch of `step`; returns (loss, logged scalars, gradient norm)."""
    stage, tcfg, device = run.stage, run.tcfg, run.config.device
    stage_start = run.schedule.starts[stage.index]
    if step == stage_start and stage.index > 0:
        # A new stage evaluates and saves what the previous stages actually trained, not their EMA
        # (CARP: stage 2 is trained against the live tokenizer weights).
        run.ema_policy.load_state_dict(run.policy.state_dict())
    size = run.schedule.batch_size(stage.index)
    n_video = round(size * tcfg.video_fraction) if run.video is not None else 0
    sample = run.sampler.sample(batch_indices(len(run.sampler), size - n_video, tcfg.seed, step, rank))
    if run.video is not None and n_video:
        video_idx = batch_indices(len(run.video.sampler), n_video, tcfg.seed + 1, step, rank)
        sample = mix_video(sample, run.video.sampler.sample(video_idx), run.video)
    batch = {k: torch.from_numpy(v).to(device) for k, v in sample.items()}
    loss, logs = model(batch)
    stage.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(stage.params, tcfg.grad_clip)) if tcfg.grad_clip > 0 else 0.0
    stage.optimizer.step()
    stage.scheduler.step()
    if tcfg.ema:
        ema_update(run.ema_policy, run.policy, step - stage_start, tcfg.ema_power, tcfg.ema_max_decay)
    return loss.item(), logs, grad_norm


def _log_entry(
    run: _Run, done: int, losses: list[float], logs: dict[str, float], grad_norm: float, wall_s: float
) -> dict[str, Any]:
    """Record the scalars of the last `log_every` steps in the history and TensorBoard."""
    entry = {
        "step": done,
        "loss": float(np.mean(losses)),
        "lr": run.stage.scheduler.get_last_lr()[0],
        "grad_norm": grad_norm,
        **({"stage": run.stage.index} if len(run.schedule.stages) > 1 else {}),
        "wall_s": wall_s,
        **{k: v for k, v in logs.items() if k != "loss"},
    }
    if run.val_sampler is not None:
        entry["val_loss"] = _val_loss(run.ema_policy, run.val_sampler, run.tcfg, run.config.device)
    run.history.append(entry)
    if run.writer:
        for k, v in entry.items():
            if k != "step":
                run.writer.add_scalar(f"train/{k}", v, done)
    return entry


def _eval_due(tcfg: TrainConfig, done: int) -> bool:
    return tcfg.eval_episodes > 0 and bool(
        (tcfg.eval_every and done % tcfg.eval_every == 0) or done == tcfg.steps
    )


def _checkpoint_due(tcfg: TrainConfig, done: int) -> bool:
    return done % tcfg.save_every == 0 or done == tcfg.steps or _eval_due(tcfg, done)


def _rank_rng_states(world: int) -> list[torch.Tensor]:
    """Every rank's torch RNG state, in rank order (a collective under DDP: all ranks call it), so a
    resumed run gives each rank back its own stream (architecture.md §Training runs)."""
    state = torch.get_rng_state()
    if world == 1:
        return [state]
    import torch.distributed as dist

    states = [torch.empty_like(state) for _ in range(world)]
    dist.all_gather(states, state)
    return states


def _checkpoint_and_evaluate(run: _Run, done: int, rng_states: list[torch.Tensor] | None) -> None:
    """Save a checkpoint when one is due; roll it out when an evaluation is due, and track the best."""
    tcfg = run.tcfg
    if rng_states is None:
        return
    want_eval = _eval_due(tcfg, done)
    extra = {"best": run.best, "history": run.history, "train_config": to_dict(tcfg)}
    optimizer, scheduler = run.stage.optimizer, run.stage.scheduler
    policies = (run.policy, run.ema_policy)
    ckpt = save_training_checkpoint(
        run.dir.root, done, *policies, optimizer, scheduler, extra, tcfg.keep_checkpoints, rng_states
    )
    _training_pictures(run, done)
    if not want_eval:
        return
    report = _rollout(pretrained_model(ckpt), tcfg.eval_env or run.store.env_id, tcfg, run.store)
    run.history.append({"step": done, "success_rate": report["success_rate"], "ci95": report["ci95"]})
    if run.writer:
        run.writer.add_scalar("eval/success_rate", report["success_rate"], done)
    if run.best is None or report["success_rate"] > run.best["success_rate"]:
        run.best = {"step": done, "success_rate": report["success_rate"]}
        point_link(run.dir.best, ckpt.name)
    # Record the evaluation in that checkpoint's state (a resumed run keeps best and history).
    update_training_state(ckpt, {"best": run.best, "history": run.history})


def _training_pictures(run: _Run, done: int, windows: int = 4) -> None:
    """A policy with pictures to show (PAD: its reconstructed or predicted frames): their metrics into the
    history and a PNG in pictures/, on a few fixed windows (held-out episodes when there is a validation
    split)."""
    if not hasattr(run.ema_policy, "training_pictures"):
        return
    import imageio.v2 as imageio

    sampler = run.val_sampler or run.sampler
    idx = np.linspace(0, len(sampler) - 1, windows).astype(np.int64)
    sample = {k: torch.from_numpy(v).to(run.config.device) for k, v in sampler.sample(idx).items()}
    out = run.ema_policy.eval().training_pictures(sample, torch.Generator().manual_seed(run.tcfg.seed))
    if out is None:
        return
    name, metrics, image = out
    run.history.append({"step": done, **metrics})
    folder = run.dir.root / "pictures"
    folder.mkdir(exist_ok=True)
    imageio.imwrite(folder / f"{name}_{done:07d}.png", image)


def _finish(run: _Run, world: int, wall_s: float) -> dict[str, Any]:
    """Check the replicas agree, write the summary, metrics and plots; returns the summary."""
    if world > 1:
        _check_replicas_agree(run.policy)
    summary = {
        "policy": run.policy_name,
        "steps": run.tcfg.steps,
        "final_loss": next((h["loss"] for h in reversed(run.history) if "loss" in h), None),
        "best": run.best,
        "train_wall_s": wall_s,
        "params": sum(p.numel() for p in run.policy.parameters()),
        "run_dir": str(run.dir.root),
    }
    if run.is_main:
        run.dir.summary_json.write_text(json.dumps(summary, indent=2))
        run.dir.metrics_json.write_text(json.dumps(run.history, indent=2))
        _plot(run.history, run.dir.root)
        if run.writer:
            run.writer.close()
    return summary


def _val_loss(policy: nn.Module, sampler: Any, tcfg: TrainConfig, device: str) -> float:
    state = torch.get_rng_state()  # validation must not shift the training RNG stream
    try:
        torch.manual_seed(tcfg.seed)
        idx = np.arange(min(len(sampler), tcfg.batch_size * 4))
        with torch.no_grad():
            batch = {k: torch.from_numpy(v).to(device) for k, v in sampler.sample(idx).items()}
            loss, _ = policy.compute_loss(batch)
        return float(loss)
    finally:
        torch.set_rng_state(state)


def _rollout(checkpoint: Path, env_id: str, tcfg: TrainConfig, store: Any) -> dict[str, Any]:
    from visuomotor.eval.policies import PolicySpec
    from visuomotor.eval.rollout import EnvConfig, evaluate
    from visuomotor.sim.registry import camera_pose_of

    if not env_id:
        raise InvalidInputError("eval_episodes > 0 needs an env: the store has no env_id; set eval_env")
    state = torch.get_rng_state()
    try:
        cameras = tuple(store.attrs.get("cameras") or ()) or None
        env_cfg = EnvConfig(
            cameras=cameras,
            image_size=int(store.attrs.get("image_size", 64)),
            camera_pose=camera_pose_of(store.attrs),  # rendered as the training images were
        )
        report = evaluate(
            env_id,
            PolicySpec(checkpoint=str(checkpoint)),
            tcfg.eval_episodes,
            env_cfg=env_cfg,
            workers=tcfg.eval_workers,
        )
        return report.to_json()
    finally:
        torch.set_rng_state(state)


def _check_replicas_agree(policy: nn.Module) -> None:
    """DDP keeps replicas identical; verify it, cheaply, at the end of a run."""
    import torch.distributed as dist

    checksum = torch.stack([p.detach().double().sum() for p in policy.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if not all(torch.allclose(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {[float(g) for g in gathered]}")


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but logging must never stop a run
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _plot(history: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history if "loss" in h]
    if steps:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [h["loss"] for h in history if "loss" in h], label="train loss")
        if any("val_loss" in h for h in history):
            ax.plot(
                [h["step"] for h in history if "val_loss" in h],
                [h["val_loss"] for h in history if "val_loss" in h],
                label="val loss",
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
    evals = [h for h in history if "success_rate" in h]
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.errorbar(
            [h["step"] for h in evals],
            [h["success_rate"] for h in evals],
            yerr=np.abs(np.array([h["ci95"] for h in evals]).T - [h["success_rate"] for h in evals]),
            marker="o",
            capsize=3,
        )
        ax.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.set_ylabel("success rate")
        fig.tight_layout()
        fig.savefig(out / "success.png", dpi=100)
        plt.close(fig)
