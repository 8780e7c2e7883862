"""Scripted-expert data collection into an episode store (`visuomotor collect`).

Episodes are rolled out in worker processes (`visuomotor.sim.workers`, one env and renderer each);
this process is the one writer, committing each episode to the store as it arrives (architecture.md
§Store), so a Ctrl-C or a SIGKILL loses at most the episodes still in flight.

Choices:
- Seeds: episode seeds count up from `seed` (default 0) per task, one per attempt; evaluation uses
  seeds from 1_000_000 on (`visuomotor.sim.workers.EVAL_SEED_BASE`), so they never overlap. Each
  episode's seed is in its meta; appending continues after the largest seed already attempted.
- Success filter: by default only successful episodes are kept and new seeds are tried until each task
  has N; a task that needs more than `max_attempts` attempts (or has no success in its first
  `ZERO_SUCCESS_GIVE_UP` attempts) is an error, after the other tasks are done.
- Episode end: an episode stops at its first successful step (or at the step limit), the same rule as
  evaluation; the frame of that step is the last one recorded. With `settle_steps` N the expert goes on
  for N more steps after the first success (recorded too), so demonstrations also show what to do once
  the goal is reached (e.g. keep closing in on a reach target instead of stopping at the threshold).
- Action noise: `a = clip(expert(obs) + N(0, σ²), low, high)`, drawn from a generator seeded by the
  episode seed; the executed, clipped action is what is recorded (also at σ=0, so recorded actions are
  always inside the action space, as the env itself would clip them).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visuomotor.errors import InvalidInputError
from visuomotor.sim.registry import camera_pose_of, check_camera_pose
from visuomotor.sim.workers import (
    EVAL_SEED_BASE,
    SLOT,
    EnvConfig,
    SigintFlag,
    WorkerPool,
    check_run_args,
    load_sim,
    make_worker_env,
    worker_init,
)

logger = logging.getLogger(__name__)

ZERO_SUCCESS_GIVE_UP = 20
"""A task whose first this-many attempts all fail is given up (the expert does not work there)."""


def default_max_attempts(episodes: int) -> int:
    return 4 * episodes + 10


@dataclass(frozen=True)
class CollectTask:
    env_id: str
    seed: int
    action_noise: float
    env_cfg: EnvConfig
    settle_steps: int = 0


@dataclass
class CollectedEpisode:
    env_id: str
    seed: int
    success: bool
    length: int
    episode_return: float
    task: str
    data: dict[str, np.ndarray]
    env_info: dict[str, Any]


def _env_info(env: Any) -> dict[str, Any]:
    space = env.action_space
    return {
        "fps": int(env.fps),
        "cameras": list(env.camera_names),
        "camera_info": getattr(env, "camera_info", {}),
        "max_episode_steps": int(env.max_episode_steps),
        "action_space": {
            "shape": [int(d) for d in space.shape],
            "low": np.asarray(space.low, np.float64).tolist(),
            "high": np.asarray(space.high, np.float64).tolist(),
            "semantics": getattr(env, "action_semantics", ""),  # the env registry's words
        },
    }


def run_collect_episode(task: CollectTask) -> CollectedEpisode:
    """Roll out the scripted expert (plus noise) for one episode in this worker; return its frames."""
    sim = load_sim(task.env_cfg.sim_module)
    env, expert = SLOT.get(
        ("collect", task.env_id, task.env_cfg),
        lambda: make_worker_env(sim, task.env_id, task.env_cfg),
        sim.make_expert,
    )
    low = np.asarray(env.action_space.low, np.float32)
    high = np.asarray(env.action_space.high, np.float32)
    noise_rng = np.random.default_rng(task.seed)
    obs, _ = env.reset(seed=task.seed)
    expert.reset()
    frames: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    actions: list[np.ndarray] = []
    success, ret, settle = False, 0.0, task.settle_steps
    for _ in range(int(env.max_episode_steps)):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        if task.action_noise > 0:
            action = action + noise_rng.normal(0.0, task.action_noise, action.shape).astype(np.float32)
        action = np.clip(action, low, high).astype(np.float32)
        for k, v in obs.items():
            frames[k].append(v)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        ret += float(reward)
        if success:  # settling after the first success
            settle -= 1
            if settle <= 0:
                break
        elif bool(info.get("success", False)):
            success = True
            if settle <= 0:
                break
        if terminated or truncated:
            break
    data = {k: np.stack(v) for k, v in frames.items()}
    data["action"] = np.stack(actions)
    return CollectedEpisode(
        env_id=task.env_id,
        seed=task.seed,
        success=success,
        length=len(actions),
        episode_return=ret,
        task=str(env.task),
        data=data,
        env_info=_env_info(env),
    )


@dataclass
class _TaskState:
    env_id: str
    next_seed: int
    attempts: int = 0
    successes: int = 0
    kept: int = 0
    in_flight: int = 0
    given_up: str | None = None


class _Scheduler:
    """Which seed of which task runs next, and when a task is done or given up. Pure bookkeeping: it
    neither runs episodes nor writes them."""

    def __init__(
        self, first_seeds: dict[str, int], episodes: int, max_attempts: int, keep_failed: bool, job: Any
    ) -> None:
        self.states = {tid: _TaskState(tid, next_seed=seed) for tid, seed in first_seeds.items()}
        self.episodes, self.max_attempts, self.keep_failed = episodes, max_attempts, keep_failed
        self._job = job  # (env_id, seed) -> CollectTask
        for st in self.states.values():
            if st.next_seed + max_attempts > EVAL_SEED_BASE:
                raise InvalidInputError(
                    f"collection seeds for {st.env_id} would reach the evaluation seeds ({EVAL_SEED_BASE})"
                )

    def next_job(self) -> CollectTask | None:
        for st in self.states.values():  # task-major: workers switch envs rarely
            if st.given_up or st.kept + st.in_flight >= self.episodes:
                continue
            if st.attempts + st.in_flight >= self.max_attempts:
                continue
            job = self._job(st.env_id, st.next_seed)
            st.next_seed += 1
            st.in_flight += 1
            return job
        return None

    def record(self, ep: CollectedEpisode) -> bool:
        """Count a finished attempt; returns whether the episode is kept."""
        st = self.states[ep.env_id]
        st.in_flight -= 1
        st.attempts += 1
        st.successes += ep.success
        keep = ep.success or self.keep_failed
        st.kept += keep
        if (
            not self.keep_failed
            and st.successes == 0
            and st.attempts >= min(ZERO_SUCCESS_GIVE_UP, self.max_attempts)
        ):
            st.given_up = f"no success in the first {st.attempts} attempts"
        elif st.kept + st.in_flight < self.episodes and st.attempts + st.in_flight >= self.max_attempts:
            st.given_up = f"only {st.kept} successes in {st.attempts} attempts (--max-attempts)"
        return keep

    def totals(self) -> tuple[int, int]:
        """(attempts, successes) over every task."""
        return sum(s.attempts for s in self.states.values()), sum(s.successes for s in self.states.values())

    def per_task(self) -> dict[str, dict[str, int]]:
        return {
            t: {"kept": s.kept, "attempts": s.attempts, "successes": s.successes}
            for t, s in self.states.items()
        }

    def failures(self) -> dict[str, str]:
        return {t: s.given_up for t, s in self.states.items() if s.given_up}


class _StoreWriter:
    """The one writer: creates the store at the first kept episode (an existing store is appended to),
    commits episodes and records the seeds attempted."""

    def __init__(
        self, out: Path, env: str, task_ids: list[str], store: Any, settings: dict[str, Any]
    ) -> None:
        self.out, self.env, self.task_ids, self.store, self.settings = out, env, task_ids, store, settings

    @property
    def num_episodes(self) -> int:
        return self.store.num_episodes if self.store is not None else 0

    def commit(self, ep: CollectedEpisode, image_size: int) -> None:
        if self.store is None:
            from visuomotor.datasets import EpisodeStore

            info = ep.env_info
            attrs = {
                "tasks_requested": self.task_ids,
                "cameras": info["cameras"],
                "image_size": image_size,
                "camera_info": info["camera_info"],
                "max_episode_steps": info["max_episode_steps"],
                "action_semantics": info["action_space"]["semantics"],
                "collection": {
                    "policy": "scripted",
                    **self.settings,
                    "episode_end": "first success or step limit",
                    "next_seed": {},
                },
            }
            self.store = EpisodeStore.create(
                self.out, fps=info["fps"], env_id=self.env, action_space=info["action_space"], attrs=attrs
            )
        meta = {"env_id": ep.env_id, "seed": ep.seed, "success": ep.success, "return": ep.episode_return}
        meta |= {k: self.settings[k] for k in ("action_noise", "settle_steps")}
        self.store.append_episode(ep.data, task=ep.task, meta=meta)

    def record_seed(self, ep: CollectedEpisode) -> None:
        """Remember the seed as attempted, so an append goes on after it (failed attempts included)."""
        if self.store is None:
            return
        coll = dict(self.store.attrs.get("collection", {}))
        nxt = dict(coll.get("next_seed", {}))
        nxt[ep.env_id] = max(int(nxt.get(ep.env_id, 0)), ep.seed + 1)
        coll["next_seed"] = nxt
        self.store.update_attrs({"collection": coll})


@dataclass
class CollectReport:
    store: str
    saved: int
    """Episodes committed by this run."""
    frames: int
    """Frames committed by this run."""
    attempts: int
    successes: int
    total_episodes: int
    """Episodes in the store after this run."""
    wall_s: float
    per_task: dict[str, dict[str, int]] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.saved / self.wall_s if self.wall_s > 0 else float("nan")


def _check_append_compatible(store: Any, env: str, tasks: list[str], cfg: EnvConfig) -> None:
    attrs = store.attrs
    problems = []
    if attrs.get("env_id") != env:
        problems.append(f"env id {attrs.get('env_id')!r} (asked for {env!r})")
    if cfg.cameras is not None and list(attrs.get("cameras", [])) != list(cfg.cameras):
        problems.append(f"cameras {attrs.get('cameras')} (asked for {list(cfg.cameras)})")
    if attrs.get("image_size") is not None and int(attrs["image_size"]) != cfg.image_size:
        problems.append(f"image size {attrs['image_size']} (asked for {cfg.image_size})")
    stored_pose = camera_pose_of(attrs)
    if cfg.camera_pose is not None and stored_pose not in (None, cfg.camera_pose):
        problems.append(f"camera pose {stored_pose!r} (asked for {cfg.camera_pose!r})")
    if "collection" not in attrs:
        problems.append("no collection attributes (not written by `visuomotor collect`)")
    if problems:
        raise InvalidInputError(
            f"cannot append to {store.path}: the store has " + "; ".join(problems) + ". "
            "Collect into a new --out, or use the store's settings."
        )


def _used_seeds(store: Any) -> dict[str, int]:
    """Per task, one past the largest seed already attempted (episode meta, plus failed attempts)."""
    nxt: dict[str, int] = {
        k: int(v) for k, v in store.attrs.get("collection", {}).get("next_seed", {}).items()
    }
    for i in range(store.num_episodes):
        meta = store.episode_meta(i)
        if "seed" in meta and "env_id" in meta:
            nxt[meta["env_id"]] = max(nxt.get(meta["env_id"], 0), int(meta["seed"]) + 1)
    return nxt


def collect(
    env: str,
    episodes: int,
    out: str | Path,
    *,
    env_cfg: EnvConfig | None = None,
    seed: int = 0,
    action_noise: float = 0.0,
    settle_steps: int = 0,
    keep_failed: bool = False,
    workers: int = 2,
    max_attempts: int | None = None,
    progress: bool = True,
) -> CollectReport:
    """Collect `episodes` expert episodes per task of `env` into the store at `out` (created or appended)."""
    env_cfg = _checked_env_cfg(env_cfg or EnvConfig(), episodes, workers, seed, action_noise, settle_steps)
    max_attempts = default_max_attempts(episodes) if max_attempts is None else max_attempts
    if max_attempts < episodes:
        raise InvalidInputError(f"--max-attempts ({max_attempts}) must be >= --episodes ({episodes})")
    task_ids = list(load_sim(env_cfg.sim_module).expand_env_id(env))
    check_camera_pose(env, env_cfg.camera_pose)
    out = Path(out)
    store, used, env_cfg = _open_existing(out, env, task_ids, env_cfg)

    def job(env_id: str, episode_seed: int) -> CollectTask:
        return CollectTask(env_id, episode_seed, float(action_noise), env_cfg, settle_steps)

    first_seeds = {tid: max(seed, used.get(tid, 0)) for tid in task_ids}
    scheduler = _Scheduler(first_seeds, episodes, max_attempts, keep_failed, job)
    settings = {"seed": seed, "action_noise": float(action_noise), "keep_failed": bool(keep_failed)}
    writer = _StoreWriter(out, env, task_ids, store, settings | {"settle_steps": settle_steps})
    t0 = time.perf_counter()
    saved, frames = _run_workers(scheduler, writer, env_cfg, workers, progress, f"collect {env}")
    attempts, successes = scheduler.totals()
    report = CollectReport(
        store=str(out),
        saved=saved,
        frames=frames,
        attempts=attempts,
        successes=successes,
        total_episodes=writer.num_episodes,
        wall_s=time.perf_counter() - t0,
        per_task=scheduler.per_task(),
    )
    failed = scheduler.failures()
    if failed:
        raise InvalidInputError(
            f"the scripted expert failed to produce {episodes} successful episodes for "
            + "; ".join(f"{tid}: {why}" for tid, why in failed.items())
            + f". {saved} episodes were saved to {out}. Lower --action-noise, raise --max-attempts, "
            "or pass --keep-failed to keep failed episodes."
        )
    return report


def _checked_env_cfg(
    env_cfg: EnvConfig, episodes: int, workers: int, seed: int, action_noise: float, settle_steps: int
) -> EnvConfig:
    """Reject bad arguments; the env config collection runs with."""
    check_run_args(episodes, workers)
    if action_noise < 0:
        raise InvalidInputError(f"--action-noise must be >= 0, got {action_noise}")
    if seed < 0:
        raise InvalidInputError(f"--seed must be >= 0, got {seed}")
    if settle_steps < 0:
        raise InvalidInputError(f"--settle-steps must be >= 0, got {settle_steps}")
    if not env_cfg.render or (env_cfg.cameras is not None and not env_cfg.cameras):
        raise InvalidInputError("collection records images: give at least one --camera")
    # Settling needs the env to run on past the first success (the worker loop stops the episode).
    return dataclasses.replace(env_cfg, terminate_on_success=settle_steps == 0)


def _open_existing(
    out: Path, env: str, task_ids: list[str], env_cfg: EnvConfig
) -> tuple[Any, dict[str, int], EnvConfig]:
    """An existing store to append to (checked against the request), the seeds it used, and the env
    config with the store's cameras and camera pose; (None, {}, env_cfg) when `out` does not exist yet."""
    from visuomotor.datasets import EpisodeStore

    if not out.exists():
        return None, {}, env_cfg
    store = EpisodeStore.open(out, mode="a")
    if env_cfg.cameras is None and store.attrs.get("cameras"):
        env_cfg = dataclasses.replace(env_cfg, cameras=tuple(store.attrs["cameras"]))  # the store's
    if env_cfg.camera_pose is None:  # the store's view, if it recorded one
        env_cfg = dataclasses.replace(env_cfg, camera_pose=camera_pose_of(store.attrs))
    _check_append_compatible(store, env, task_ids, env_cfg)
    logger.info("appending to %s (%d episodes already)", out, store.num_episodes)
    return store, _used_seeds(store), env_cfg


def _run_workers(
    scheduler: _Scheduler, writer: _StoreWriter, env_cfg: EnvConfig, workers: int, progress: bool, desc: str
) -> tuple[int, int]:
    """Roll episodes out in the worker pool and commit each kept one as it arrives; returns the episodes
    and frames committed. Ctrl-C stops the workers; what was committed stays."""
    total = scheduler.episodes * len(scheduler.states)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="ep", dynamic_ncols=True)
    saved = frames = 0
    t0 = time.perf_counter()
    interrupted = False
    try:
        with (
            SigintFlag() as sigint,
            WorkerPool(
                run_collect_episode,
                min(workers, total),
                initializer=worker_init,
                preload=(env_cfg.sim_module,),
            ) as pool,
        ):
            # Two jobs per worker keep every core busy while the writer commits.
            for _ in range(2 * pool.num_workers):
                job = scheduler.next_job()
                if job is None:
                    break
                pool.submit(job.seed, job)
            while pool.pending:
                _, ep = pool.next_result(stop=sigint.is_set)
                # Commit and count as one step: Ctrl-C only takes effect at the checks (SigintFlag), so
                # the report never lags the store.
                if scheduler.record(ep):
                    writer.commit(ep, env_cfg.image_size)
                    saved += 1
                    frames += ep.length
                writer.record_seed(ep)
                sigint.check()
                if bar is not None:
                    _update_bar(bar, ep, scheduler, frames / max(time.perf_counter() - t0, 1e-9))
                job = scheduler.next_job()
                if job is not None:
                    pool.submit(job.seed, job)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.close()
        if interrupted:
            logger.warning(
                "interrupted: %d episodes of this run committed to %s (%d in the store)",
                saved,
                writer.out,
                writer.num_episodes,
            )
    return saved, frames


def _update_bar(bar: Any, ep: CollectedEpisode, scheduler: _Scheduler, fps: float) -> None:
    if ep.success or scheduler.keep_failed:
        bar.update(1)
    attempts, successes = scheduler.totals()
    bar.set_postfix(success=f"{successes / attempts:.0%}", fps=f"{fps:.0f}")
