"""Why a reach-v3 policy misses: success on training vs evaluation seeds, the error of its predicted
action on states the scripted expert visits (bias vs spread between samples), and its first action as the
goal of a training seed moves (smooth, or jumping between the demonstrations).

    python experiments/reach_diagnosis.py --checkpoint runs/ab_reach

Training seeds are 0-9 (the collection seeds of a 10-episode store); evaluation seeds start at 1,000,000.
The figures in BENCHMARKS.md ("Why reach fails") come from this script.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from visuomotor.eval.policies import PolicySpec, build_policy
from visuomotor.eval.rollout import action_to_numpy, obs_to_torch
from visuomotor.sim import make_expert
from visuomotor.sim.workers import EVAL_SEED_BASE, EnvConfig, load_sim, make_worker_env

ENV = "metaworld/reach-v3"


def rollout(env, policy, seed: int) -> tuple[bool, float]:
    """Success, and the final distance between the hand (obs[:3]) and the goal (obs[-3:])."""
    torch.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    for _ in range(int(env.max_episode_steps)):
        action = policy.select_action(obs_to_torch(obs, env.task))
        obs, _, terminated, truncated, info = env.step(action_to_numpy(action, env.action_space))
        state = obs["observation.environment_state"]
        if info.get("success") or terminated or truncated:
            break
    return bool(info.get("success")), float(np.linalg.norm(state[:3] - state[-3:]))


def current_actions(policy, before: dict, now: dict, task: str, samples: int = 1) -> np.ndarray:
    """The policy's action for the current step (samples, A), from the 2-frame window (before, now)."""
    window = {
        k: torch.stack([before[k], now[k]], 1).repeat_interleave(samples, 0) for k in policy.config.input_keys
    }
    window["task"] = [task] * samples
    return policy.predict_action_chunk(window)[:, policy.config.n_obs_steps - 1].numpy()


def action_errors(env, policy, seed: int, samples: int, steps: int = 60) -> list[tuple[float, ...]]:
    """(mean per-sample error, error of the sample mean, spread, then the per-sample error of x, y and z)
    of the xyz action at every 4th expert step."""
    obs, _ = env.reset(seed=seed)
    expert, prev, out = make_expert(env), obs, []
    for t in range(steps):
        target = np.asarray(expert.act(obs))[:3]
        if t % 4 == 0:
            now, before = obs_to_torch(obs, env.task), obs_to_torch(prev, env.task)
            chunk = current_actions(policy, before, now, env.task, samples)[:, :3]  # (samples, 3)
            per_dim = np.abs(chunk - target).mean(0)  # (3,)
            out.append((per_dim.mean(), np.abs(chunk.mean(0) - target).mean(), chunk.std(0).mean(), *per_dim))
        prev = obs
        obs, _, _, _, info = env.step(np.asarray(expert.act(obs)))
        if info.get("success"):
            break
    return out


def goal_sweep(env, policy, seed: int, shifts: np.ndarray) -> np.ndarray:
    """The policy's first x action on a training seed's first observation, with the goal's x (index 36 of
    the 39-d state) moved by each shift: a regressor varies smoothly, a classifier jumps between the
    demonstrations' chunks."""
    obs, _ = env.reset(seed=seed)
    now = obs_to_torch(obs, env.task)
    out = []
    for shift in shifts:
        state = now["observation.environment_state"].clone()
        state[..., 36] += float(shift)
        frame = now | {"observation.environment_state": state}
        out.append(current_actions(policy, frame, frame, env.task)[0, 0])
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sim = load_sim()
    env = make_worker_env(sim, ENV, EnvConfig(render=False))
    policy = build_policy(PolicySpec(checkpoint=args.checkpoint), env, sim)
    if policy.config.n_obs_steps != 2:
        raise ValueError(
            f"{args.checkpoint}: this diagnosis builds 2-frame windows, the policy has To={policy.config.n_obs_steps}"
        )
    with torch.inference_mode():
        for name, base in (("training", 0), ("evaluation", EVAL_SEED_BASE)):
            seeds = range(base, base + args.episodes)
            results = [rollout(env, policy, s) for s in seeds]
            wins = sum(ok for ok, _ in results)
            missed = sorted(round(d, 3) for ok, d in results if not ok)
            errs = np.array([e for s in list(seeds)[:5] for e in action_errors(env, policy, s, args.samples)])
            print(
                f"{name} seeds: success {wins}/{args.episodes}; action error per sample {errs[:, 0].mean():.3f} "
                f"(x, y, z: {', '.join(f'{e:.3f}' for e in errs[:, 3:].mean(0))}), "
                f"of the mean of {args.samples} {errs[:, 1].mean():.3f}, spread {errs[:, 2].mean():.3f}; "
                f"final hand-goal distance (m) of the failures {missed}"
            )
        shifts = np.linspace(-0.1, 0.1, 9)
        for seed in (0, 3):
            row = " ".join(f"{a:+.2f}" for a in goal_sweep(env, policy, seed, shifts))
            print(f"training seed {seed}, goal x moved by -0.1 .. +0.1 m in 9 steps: first x action {row}")


if __name__ == "__main__":
    main()
