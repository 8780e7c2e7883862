"""What temporal ensembling changes in one episode: the same checkpoint and seed run open loop and with
`temporal_ensemble`, side by side. Prints when each succeeds, the gripper command over the first steps,
the mean size of the xyz actions and where the hand, the object and the goal end up.

    python experiments/ensemble_diagnosis.py --checkpoint runs/mt10_dp_rel2_12k --env metaworld/peg-insert-side-v3

The DP peg-insert figures in BENCHMARKS.md ("50 episodes per task, compared seed by seed") come from it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from visuomotor.eval.rollout import action_to_numpy, obs_to_torch
from visuomotor.policies import load_policy
from visuomotor.sim import make_env
from visuomotor.sim.workers import EVAL_SEED_BASE


def run_episode(policy, env, seed: int) -> tuple[int | None, np.ndarray, np.ndarray]:
    """(step of the first success or None, actions (T, A), final environment state), seeded as `eval`."""
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    actions, success = [], None
    with torch.inference_mode():
        for t in range(int(env.max_episode_steps)):
            action = action_to_numpy(policy.select_action(obs_to_torch(obs, env.task)), env.action_space)
            actions.append(action)
            obs, _, _, _, info = env.step(action)
            if info.get("success"):
                success = t + 1
                break
    return success, np.array(actions), np.asarray(obs["observation.environment_state"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--env", default="metaworld/peg-insert-side-v3")
    parser.add_argument(
        "--seed", type=int, default=EVAL_SEED_BASE, help="episode seed (default: the first eval seed)"
    )
    parser.add_argument(
        "--coefficient", default="0.01", help="temporal_ensemble value to compare with open loop"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = make_env(args.env, render=False)
    for overrides in (None, {"temporal_ensemble": args.coefficient}):
        policy = load_policy(args.checkpoint, overrides=overrides)
        success, actions, state = run_episode(policy, env, args.seed)
        print(
            f"temporal_ensemble={policy.config.temporal_ensemble}: success at step {success}, {len(actions)} steps"
        )
        print(f"  gripper, every 6th of the first 120 steps: {np.round(actions[:120:6, 3], 2)}")
        print(f"  mean |action| x, y, z: {np.round(np.abs(actions[:, :3]).mean(0), 3)}")
        # Metaworld's 39-d state: hand at 0, first object at 4, goal at 36 (each xyz).
        print(
            f"  final hand {np.round(state[:3], 3)}, object {np.round(state[4:7], 3)}, goal {np.round(state[36:39], 3)}"
        )


if __name__ == "__main__":
    main()
