"""The online learner (architecture.md §EXPO): fine-tune an EXPO policy in an environment, with the
offline store mixed 50/50 into every minibatch (notes §2).

    for every env step: act (OTF with the EMA base policy and target critics; uniform while the base
        policy is untrained) -> step -> add (s, a, r, s', mask) to the replay buffer -> `utd` critic
        updates + one BC / edit / temperature update (`updates.Learner`) -> evaluate every K steps
    at every episode end: commit the episode to RUN/replay.zarr (the store format: crash-safe, each
        episode whole), and checkpoint when `save_every` env steps have passed

Reward: sparse success, r = info["success"]; an episode terminates at success (mask 0) and is truncated at
its time limit (mask 1: bootstrapped, replay.py). Checkpoints fall on episode ends, so a resumed run starts
a fresh episode exactly where the killed one would have: the networks, optimisers, temperature and RNG
come from the checkpoint, the replay buffer from the replay store's first `episodes` episodes (a store
that got further than the checkpoint is cut back to it), and every later episode reset is seeded by its
index. `make_env(env_id, max_episode_steps)` comes from the CLI (policies never import the simulators).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visuomotor.datasets import EpisodeStore
from visuomotor.keys import IMAGE_PREFIX
from visuomotor.policies.expo.config import ExpoConfig, OnlineConfig
from visuomotor.policies.expo.policy import ExpoPolicy
from visuomotor.policies.expo.prepare import (
    build_policy,
    check_env,
    new_record,
    open_offline_store,
    resumed_record,
)
from visuomotor.policies.expo.replay import (
    FINAL_OBS_META,
    REWARD_KEY,
    SUCCESS_KEY,
    TERMINATED_KEY,
    ReplayBuffer,
    Transitions,
    episode_transitions,
    mixed_indices,
    offline_transitions,
    resolve_reward_source,
)
from visuomotor.policies.expo.rollouts import evaluate, obs_tensors, train_seed, write_curves
from visuomotor.policies.expo.state import (
    cut_replay_store,
    load_checkpoint,
    load_learner_tensors,
    save_best,
    save_checkpoint,
)
from visuomotor.policies.expo.updates import Batch, Learner
from visuomotor.rundir import RunDir

log = logging.getLogger(__name__)

MakeEnv = Callable[[str, int | None], Any]
REPLAY = "replay.zarr"


@dataclass
class OnlineRun:
    """What the steps of `train_online` share."""

    dir: RunDir
    env_id: str
    learner: Learner
    offline: Transitions
    replay: ReplayBuffer
    store: EpisodeStore
    env: Any
    eval_env: Any
    rng: np.random.Generator
    pretrained: bool
    env_steps: int = 0
    episodes: int = 0
    last_save: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    logs: dict[str, float] = field(default_factory=dict)
    plotted: int = 0
    """Evaluations in curves.png."""
    t0: float = field(default_factory=time.perf_counter)

    @property
    def policy(self) -> ExpoPolicy:
        return self.learner.policy

    @property
    def ocfg(self) -> OnlineConfig:
        return self.learner.ocfg


def train_online(
    data: str | Path | None,
    out: str | Path,
    env_id: str | None,
    make_env: MakeEnv,
    *,
    preset: str = "cpu",
    policy_overrides: Mapping[str, str] | None = None,
    online_overrides: Mapping[str, str] | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) an online run in `out`; returns its summary (also out/summary.json)."""
    run_dir = RunDir(Path(out))
    if resume:
        record, ocfg = resumed_record(run_dir, online_overrides or {})
        data, env_id, init = record["data"], record["env_id"], record["init"]
    else:
        record, ocfg = new_record(
            run_dir, data, env_id, init, preset, policy_overrides or {}, online_overrides or {}
        )
    assert data is not None and env_id is not None
    if ocfg.threads:
        torch.set_num_threads(ocfg.threads)
    offline_store = open_offline_store(data)
    torch.manual_seed(ocfg.seed)  # before any weight is drawn
    policy, pretrained = build_policy(record, offline_store, init, resume)
    env = make_env(env_id, ocfg.max_episode_steps or None)
    check_env(env, policy.config, env_id)
    source = resolve_reward_source(offline_store, ocfg.reward_source, policy.config.algorithm != "bc")
    run = OnlineRun(
        dir=run_dir,
        env_id=env_id,
        learner=Learner(policy.eval(), ocfg),
        offline=offline_transitions(offline_store, policy.config.input_keys, source),
        replay=_empty_replay(policy.config, ocfg.online_steps),
        store=None,  # type: ignore[arg-type]  (opened below: new, or cut back to the checkpoint)
        env=env,
        eval_env=make_env(env_id, ocfg.max_episode_steps or None) if ocfg.eval_episodes else None,
        rng=np.random.default_rng(ocfg.seed),
        pretrained=pretrained,
    )
    if resume:
        _restore(run)
    else:
        _start(run, record, offline_store)
    _loop(run, progress)
    return _finish(run)


# ---------------------------------------------------------------------------------------------- set-up
def _empty_replay(config: ExpoConfig, capacity: int) -> ReplayBuffer:
    return ReplayBuffer({k: config.input_shapes[k] for k in config.input_keys}, config.action_dim, capacity)


def _start(run: OnlineRun, record: dict[str, Any], offline_store: EpisodeStore) -> None:
    """A new run: run.json, an empty replay store, the evaluation at 0 env steps."""
    run.dir.root.mkdir(parents=True, exist_ok=True)
    run.dir.run_json.write_text(json.dumps(record, indent=2))
    path = run.dir.root / REPLAY
    shutil.rmtree(path, ignore_errors=True)  # left by a run killed before its first checkpoint
    run.store = EpisodeStore.create(
        path,
        fps=int(getattr(run.env, "fps", 0) or offline_store.fps or 1),
        env_id=run.env_id,
        action_space=offline_store.attrs.get("action_space") or {},
        attrs={
            "source": f"visuomotor expo online run {run.dir.root.name}",
            "reward": f"'{REWARD_KEY}' = info['success'] (sparse); '{TERMINATED_KEY}' ends an episode, a "
            f"time-limit cut does not; episode meta '{FINAL_OBS_META}' is the observation after the last action",
        },
    )
    _evaluate(run)


def _restore(run: OnlineRun) -> None:
    """Networks, optimisers, temperature, counters and RNG from the last checkpoint; the replay buffer
    from the replay store, cut back to the checkpoint's episodes."""
    state, tensors, torch_rng = load_checkpoint(run.dir)
    load_learner_tensors(run.learner, tensors)
    run.learner.updates = state["updates"]
    run.env_steps, run.episodes, run.last_save = state["env_steps"], state["episodes"], state["env_steps"]
    run.rng.bit_generator.state = state["numpy_rng"]
    run.curve, run.history, run.best, run.logs = (
        state["curve"],
        state["history"],
        state["best"],
        state["logs"],
    )
    run.store = cut_replay_store(run.dir.root / REPLAY, run.episodes)
    keys = run.policy.config.input_keys
    for e in range(run.store.num_episodes):
        data, meta = run.store.episode(e), run.store.episode_meta(e)
        final = {k: np.asarray(meta[FINAL_OBS_META][k], np.float32) for k in keys}
        run.replay.add(
            episode_transitions(
                {k: data[k] for k in keys}, data["action"], data[REWARD_KEY], data[TERMINATED_KEY], final
            )
        )
    torch.set_rng_state(torch_rng)
    log.info("resumed %s at %d env steps (%d episodes)", run.dir.root, run.env_steps, run.episodes)


# ---------------------------------------------------------------------------------------------- the loop
def _loop(run: OnlineRun, progress: bool) -> None:
    from tqdm import tqdm

    total = run.ocfg.online_steps
    bar = tqdm(total=total, initial=min(run.env_steps, total), desc="expo online", disable=not progress)
    while run.env_steps < total:
        _commit(run, _run_episode(run, bar))
        if run.env_steps - run.last_save >= run.ocfg.save_every or run.env_steps >= total:
            _save(run)
    bar.close()


@dataclass
class _Episode:
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    final_obs: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int = 0
    end: str = ""
    """terminated (at success: mask 0), time_limit (truncated: bootstrapped) or budget (online_steps reached)."""


def _lowdim(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The low-dim arrays of an env observation, float32 as the store keeps them (images are not stored)."""
    return {
        k: np.asarray(v, np.float32)
        for k, v in obs.items()
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not k.startswith(IMAGE_PREFIX)
    }


def _run_episode(run: OnlineRun, bar: Any) -> _Episode:
    """One training episode; every step also trains and, when due, evaluates."""
    ep = _Episode(seed=train_seed(run.ocfg.seed, run.episodes))
    obs = _lowdim(run.env.reset(seed=ep.seed)[0])
    keys = run.policy.config.input_keys
    while True:
        action = _explore_action(run, obs)
        raw_next, _, terminated, truncated, info = run.env.step(action)
        nxt, reward = _lowdim(raw_next), float(bool(info.get("success", False)))
        for k, v in obs.items():
            ep.frames.setdefault(k, []).append(v)
        ep.actions.append(action)
        ep.rewards.append(reward)
        ep.terminated.append(bool(terminated))
        one = {k: obs[k][None] for k in keys}
        run.replay.add(
            episode_transitions(
                one, action[None], np.array([reward]), np.array([terminated]), {k: nxt[k] for k in keys}
            )
        )
        run.env_steps += 1
        _train_and_report(run)
        bar.update(1)
        obs = nxt
        if terminated or truncated or run.env_steps >= run.ocfg.online_steps:
            ep.final_obs = nxt
            ep.end = "terminated" if terminated else "time_limit" if truncated else "budget"
            return ep


def _explore_action(run: OnlineRun, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Uniform while an untrained base policy waits for `random_steps`; else the learner's action."""
    low, high = run.env.action_space.low, run.env.action_space.high
    if not run.pretrained and run.env_steps < run.ocfg.random_steps:
        return run.rng.uniform(low, high).astype(np.float32)
    return _policy_action(run, obs, explore=True)


@torch.no_grad()
def _policy_action(run: OnlineRun, obs: dict[str, np.ndarray], explore: bool) -> np.ndarray:
    feat = run.policy.features(obs_tensors(obs, run.policy.config.input_keys))
    action = run.policy.normalizer.unnormalize("action", run.learner.act(feat, explore))[0]
    space = run.env.action_space
    return np.clip(action.numpy(), space.low, space.high).astype(np.float32)


def _train_and_report(run: OnlineRun) -> None:
    ocfg, done = run.ocfg, run.env_steps
    if run.pretrained or done >= ocfg.random_steps:
        minibatches = ocfg.utd if run.policy.critics is not None else 1
        idx = mixed_indices(
            run.rng, len(run.offline), len(run.replay), ocfg.batch_size, minibatches, ocfg.offline_ratio
        )
        run.logs = run.learner.update([_batch(run, off, on) for off, on in idx])
    if done % ocfg.log_every == 0:
        wall = time.perf_counter() - run.t0  # since this process started (a resumed run restarts it)
        run.history.append({"env_steps": done, "episodes": run.episodes, "wall_s": wall, **run.logs})
    if ocfg.eval_episodes and (
        done == ocfg.online_steps or (ocfg.eval_every and done % ocfg.eval_every == 0)
    ):
        _evaluate(run)


@torch.no_grad()
def _batch(run: OnlineRun, offline_rows: np.ndarray, online_rows: np.ndarray) -> Batch:
    """A minibatch in the networks' space: offline rows first, then online rows."""
    t = Transitions.concat([run.offline.rows(offline_rows), run.replay.rows(online_rows)])
    p = run.policy
    return Batch(
        feat=p.features({k: torch.from_numpy(v) for k, v in t.obs.items()}),
        action=p.normalizer.normalize_key("action", torch.from_numpy(t.action)),
        reward=torch.from_numpy(t.reward),
        next_feat=p.features({k: torch.from_numpy(v) for k, v in t.next_obs.items()}),
        mask=torch.from_numpy(t.mask),
    )


def _evaluate(run: OnlineRun) -> None:
    """Roll out the acting policy on the evaluation seeds; record the curve; keep the best policy."""
    if not run.ocfg.eval_episodes:
        return
    result = evaluate(
        run.eval_env, lambda obs: _policy_action(run, _lowdim(obs), explore=False), run.ocfg.eval_episodes
    )
    run.curve.append({"env_steps": run.env_steps, **result})
    write_curves(run.curve, run.dir.root, "", png=False)  # the plot follows at the next checkpoint
    if run.best is None or result["success_rate"] > run.best["success_rate"]:
        run.best = {"env_steps": run.env_steps, "success_rate": result["success_rate"]}
        save_best(run.dir, run.env_steps, run.learner)


def _commit(run: OnlineRun, ep: _Episode) -> None:
    """Append the finished episode to the replay store (committed whole, or not at all)."""
    data: dict[str, np.ndarray] = {k: np.stack(v) for k, v in ep.frames.items()}
    data |= {
        "action": np.stack(ep.actions),
        REWARD_KEY: np.asarray(ep.rewards, np.float32),
        TERMINATED_KEY: np.asarray(ep.terminated, bool),
        SUCCESS_KEY: np.asarray(ep.rewards, np.float32) > 0,
    }
    meta = {
        "seed": ep.seed,
        "success": bool(data[SUCCESS_KEY].any()),
        "return": float(data[REWARD_KEY].sum()),
        "env_steps_end": run.env_steps,
        "end": ep.end,
        FINAL_OBS_META: {k: v.tolist() for k, v in ep.final_obs.items()},
    }
    run.store.append_episode(data, task=str(getattr(run.env, "task", run.env_id)), meta=meta)
    run.episodes += 1


def _save(run: OnlineRun) -> None:
    state = {
        "env_steps": run.env_steps,
        "episodes": run.episodes,
        "updates": run.learner.updates,
        "numpy_rng": run.rng.bit_generator.state,
        "curve": run.curve,
        "history": run.history,
        "best": run.best,
        "logs": run.logs,
    }
    save_checkpoint(run.dir, run.env_steps, run.learner, state, run.ocfg.keep_checkpoints)
    if len(run.curve) > run.plotted:  # after the checkpoint: plotting is slow
        write_curves(run.curve, run.dir.root, _title(run))
        run.plotted = len(run.curve)
    run.last_save = run.env_steps
    run.dir.metrics_json.write_text(json.dumps(run.history, indent=2))


def _title(run: OnlineRun) -> str:
    c = run.policy.config
    return f"{c.algorithm} on {run.env_id} (beta {c.edit_scale}, UTD {run.ocfg.utd})"


def _finish(run: OnlineRun) -> dict[str, Any]:
    wall = time.perf_counter() - run.t0
    c = run.policy.config
    summary = {
        "policy": "expo",
        "algorithm": c.algorithm,
        "env_id": run.env_id,
        "env_steps": run.env_steps,
        "episodes": run.episodes,
        "final_success_rate": run.curve[-1]["success_rate"] if run.curve else None,
        "best": run.best,
        "wall_s": wall,
        "run_dir": str(run.dir.root),
        "replay_store": str(run.dir.root / REPLAY),
    }
    run.dir.summary_json.write_text(json.dumps(summary, indent=2))
    run.dir.metrics_json.write_text(json.dumps(run.history, indent=2))
    write_curves(run.curve, run.dir.root, _title(run))
    return summary
