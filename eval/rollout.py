"""The rollout runner: N episodes per task on fixed evaluation seeds, in parallel worker processes.

Choices, each on purpose:

- Seeds. Collection uses seeds 0, 1, 2, ... (`visuomotor collect`, architecture.md §Evaluation);
  evaluation episode `i` of every task uses seed `EVAL_SEED_BASE + seed_offset + i` with
  `EVAL_SEED_BASE = 1_000_000`, so an evaluation never replays a training episode's initial state, and
  two runs with the same flags see the same initial states (a paired comparison of methods,
  architecture.md §Numbers). The seed also seeds numpy and torch before the episode, so stochastic
  policies (diffusion sampling, `random`) are reproducible.
- Success. An episode is a success if `info["success"]` is true at any step, and it stops at that
  step (or at termination / truncation / the env's step limit). Metaworld's `success` is a latched
  "task done" signal, so stopping early changes no outcome and saves most of the time of good
  policies. Returns are therefore sums up to the first success, not over a fixed horizon.
- Parallelism. One worker process per core (`workers`), each with one env (and its one renderer,
  architecture.md §Rendering) reused across the episodes of a task; torch uses one thread per worker. Tasks
  are queued task-major, so a worker switches envs rarely; it closes the old env before making a new one.
- Policy interface. The runner calls only `policy.reset()` per episode and `policy.select_action(obs)`
  per step (architecture.md §Conventions), with batched (B=1) torch tensors; history and action
  chunks are the policy's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.eval.metrics import EpisodeResult, TaskSummary, format_table, summarize
from visuomotor.eval.policies import PolicySpec, build_policy
from visuomotor.keys import image_key
from visuomotor.sim.workers import (
    EVAL_SEED_BASE,
    SLOT,
    EnvConfig,
    SigintFlag,
    WorkerPool,
    check_run_args,
    eval_seed,
    load_sim,
    make_worker_env,
    worker_init,
)

logger = logging.getLogger(__name__)


def obs_to_torch(obs: dict[str, Any], task: str) -> dict[str, Any]:
    """Env observation (numpy, unbatched) -> policy input (torch, B=1, standard keys + "task")."""
    import torch

    batch: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in obs.items()}
    batch["task"] = [task]
    return batch


def action_to_numpy(action: Any, space: Any) -> np.ndarray:
    if hasattr(action, "detach"):
        action = action.detach().cpu().numpy()
    action = np.asarray(action, dtype=np.float32)
    shape = tuple(space.shape)
    if action.size != int(np.prod(shape)):
        raise ValueError(f"policy returned an action of shape {action.shape}, env expects {shape}")
    return action.reshape(shape)


def camera_frames(obs: dict[str, Any], cameras: Sequence[str], policy: Any = None) -> list[np.ndarray]:
    """The rendered cameras, then, for a policy that crops its images, each camera as the policy sees
    it (the centre crop, padded back to the frame's size) so a video shows what the policy was given."""
    frames = [obs[image_key(c)] for c in cameras if image_key(c) in obs]
    view = policy.policy_view(obs) if hasattr(policy, "policy_view") else None
    return frames if view is None else [*frames, view]


@dataclass(frozen=True)
class EvalTask:
    env_id: str
    episode: int
    seed: int
    policy: PolicySpec
    env_cfg: EnvConfig
    video_path: str | None = None


def run_eval_episode(task: EvalTask) -> EpisodeResult:
    """Roll out one evaluation episode in this worker (reusing the env and policy of the same task)."""
    import torch

    from visuomotor.eval.video import compose_frame, write_episode_video

    sim = load_sim(task.env_cfg.sim_module)
    env, policy = SLOT.get(
        (task.env_id, task.env_cfg, task.policy),
        lambda: make_worker_env(sim, task.env_id, task.env_cfg),
        lambda env: build_policy(task.policy, env, sim),
    )
    np.random.seed(task.seed % 2**32)
    torch.manual_seed(task.seed)
    obs, _ = env.reset(seed=task.seed)
    policy.reset()
    record = task.video_path is not None and task.env_cfg.render
    frames = [compose_frame(camera_frames(obs, env.camera_names, policy))] if record else []
    max_steps = int(env.max_episode_steps)
    success, success_step, ret, steps, infer_s = False, None, 0.0, 0, 0.0
    with torch.inference_mode():
        while steps < max_steps:
            batch = obs_to_torch(obs, env.task)
            t0 = time.perf_counter()
            action = policy.select_action(batch)
            infer_s += time.perf_counter() - t0
            obs, reward, terminated, truncated, info = env.step(action_to_numpy(action, env.action_space))
            steps += 1
            ret += float(reward)
            if record:
                frames.append(compose_frame(camera_frames(obs, env.camera_names, policy)))
            if bool(info.get("success", False)):
                success, success_step = True, steps  # frame index `steps` is the first showing it
                break
            if terminated or truncated:
                break
    video = None
    if record and frames and frames[0].size:
        video = str(write_episode_video(task.video_path, frames, success, success_step, env.fps))
    return EpisodeResult(
        env_id=task.env_id,
        episode=task.episode,
        seed=task.seed,
        success=success,
        episode_return=ret,
        length=steps,
        mean_inference_ms=1000.0 * infer_s / max(1, steps),
        video=video,
    )


# --------------------------------------------------------------------------------------------------
# Parent side.


@dataclass
class EvalReport:
    """Everything an evaluation produced; `to_json()` is what `--json` writes."""

    env: str
    policy: str
    overall: TaskSummary
    per_task: dict[str, TaskSummary]
    episodes: list[EpisodeResult]
    seeds: list[int]
    wall_s: float
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "env": self.env,
            "policy": self.policy,
            "episodes": self.overall.episodes,
            "successes": self.overall.successes,
            "success_rate": self.overall.success_rate,
            "ci95": list(self.overall.ci95),
            "mean_return": self.overall.mean_return,
            "mean_length": self.overall.mean_length,
            "mean_inference_ms": self.overall.mean_inference_ms,
            "per_task": {tid: s.to_json() for tid, s in self.per_task.items()},
            "seeds": {"base": EVAL_SEED_BASE, "first": min(self.seeds), "last": max(self.seeds)},
            "wall_s": self.wall_s,
            "config": self.config,
            "episode_results": [
                {
                    "env_id": r.env_id,
                    "episode": r.episode,
                    "seed": r.seed,
                    "success": r.success,
                    "return": r.episode_return,
                    "length": r.length,
                    "mean_inference_ms": r.mean_inference_ms,
                    "video": r.video,
                }
                for r in self.episodes
            ],
        }

    def table(self) -> str:
        return format_table(self.per_task, self.overall)


def video_filename(env_id: str, episode: int, seed: int) -> str:
    return f"{env_id.replace('/', '_')}_ep{episode:03d}_seed{seed}.mp4"


def evaluate(
    env: str,
    policy: PolicySpec,
    episodes: int,
    *,
    env_cfg: EnvConfig | None = None,
    workers: int = 2,
    seed_offset: int = 0,
    video_dir: str | Path | None = None,
    videos_per_task: int = 0,
    progress: bool = False,
) -> EvalReport:
    """Evaluate `policy` for `episodes` episodes on every task of `env` (a single or multi-task id)."""
    check_run_args(episodes, workers)
    if seed_offset < 0:
        raise InvalidInputError(f"--seed-offset must be >= 0, got {seed_offset}")
    env_cfg = env_cfg or EnvConfig()
    sim = load_sim(env_cfg.sim_module)
    task_ids = list(sim.expand_env_id(env))  # ValueError listing valid ids on an unknown id
    if videos_per_task > 0 and video_dir is None:
        raise InvalidInputError("--videos-per-task needs --video DIR")
    if video_dir is not None:
        Path(video_dir).mkdir(parents=True, exist_ok=True)
        videos_per_task = max(videos_per_task, 0)

    jobs = []
    for tid in task_ids:  # task-major: workers rarely switch envs
        for i in range(episodes):
            seed = eval_seed(i, seed_offset)
            video = None
            if video_dir is not None and i < videos_per_task:
                video = str(Path(video_dir) / video_filename(tid, i, seed))
            jobs.append(EvalTask(tid, i, seed, policy, env_cfg, video))

    t0 = time.perf_counter()
    results: list[EpisodeResult] = []
    n_workers = min(workers, len(jobs))
    bar = _progress_bar(len(jobs), f"eval {policy.label}", progress)
    try:
        # Ctrl-C is a flag polled between results (SigintFlag), so it never lands inside a lock.
        with (
            SigintFlag() as sigint,
            WorkerPool(
                run_eval_episode, n_workers, initializer=worker_init, preload=(env_cfg.sim_module,)
            ) as pool,
        ):
            for j, job in enumerate(jobs):
                pool.submit(j, job)
            while pool.pending:
                _, res = pool.next_result(stop=sigint.is_set)
                results.append(res)
                if bar is not None:
                    k = sum(r.success for r in results)
                    bar.set_postfix(success=f"{k}/{len(results)}")
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    order = {tid: i for i, tid in enumerate(task_ids)}
    results.sort(key=lambda r: (order[r.env_id], r.episode))
    overall, per_task = summarize(results)
    return EvalReport(
        env=env,
        policy=policy.label,
        overall=overall,
        per_task=per_task,
        episodes=results,
        seeds=[r.seed for r in results],
        wall_s=wall,
        config={
            "cameras": None if env_cfg.cameras is None else list(env_cfg.cameras),
            "image_size": env_cfg.image_size,
            "render": env_cfg.render,
            "max_episode_steps": env_cfg.max_episode_steps,
            "workers": n_workers,
            "seed_offset": seed_offset,
        },
    )


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ep", dynamic_ncols=True)


def write_json(report: EvalReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    path.write_text(json.dumps(_finite(data), indent=2) + "\n")
    return path


def _finite(x: Any) -> Any:
    """JSON has no NaN: write null instead (e.g. inference time of a 0-step episode)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def plot_success(report: EvalReport, path: str | Path) -> Path:
    """Bar plot of per-task success rate with Wilson 95% error bars (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(report.per_task)
    rates = np.array([report.per_task[n].success_rate for n in names])
    lo = np.array([report.per_task[n].ci95[0] for n in names])
    hi = np.array([report.per_task[n].ci95[1] for n in names])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(names) + 2), 3.8), dpi=120)
    x = np.arange(len(names))
    ax.bar(x, rates, color="#4c72b0")
    ax.errorbar(x, rates, yerr=np.stack([rates - lo, hi - rates]), fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(x, [n.split("/")[-1] for n in names], rotation=45 if len(names) > 3 else 0, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    o = report.overall
    ax.set_title(
        f"{report.policy} on {report.env}\n{o.success_rate:.0%} "
        f"[{o.ci95[0]:.2f}, {o.ci95[1]:.2f}], {o.episodes} episodes",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
