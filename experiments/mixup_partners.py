"""How near mixup's partners are: the distance (`Policy.current_state`, as mixup measures it) from each
training window to the nearest window of another demonstration of the same task, within random batches
(what `mixup` uses), over the whole training set (tried at commit 88cdd9e), and to the k-th nearest over
the whole training set (one of the 8 nearest drawn at every step was tried at commit 56badb9).

    python experiments/mixup_partners.py --checkpoint runs/RUN --data data/mt10.zarr --batch-size 64 --neighbours 8

The checkpoint supplies the window layout and the normalisation; its own mixup setting does not matter.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from visuomotor.datasets import EpisodeStore, SequenceSampler
from visuomotor.policies import load_policy
from visuomotor.policies.common.mixup import nearest_other_demonstrations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--neighbours", type=int, default=8)
    args = parser.parse_args()
    policy = load_policy(args.checkpoint)
    sampler = SequenceSampler(EpisodeStore.open(args.data), policy.config.window_spec())
    windows = sampler.sample(np.arange(len(sampler)))
    state = policy.current_state(windows)
    episode, task = torch.as_tensor(windows["episode_index"]), torch.as_tensor(windows["task_index"])

    def distances(rows: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
        found = partner >= 0
        return (state[rows][found] - state[rows][partner[found]]).norm(dim=1)

    every = torch.arange(len(sampler))
    nearest = nearest_other_demonstrations(state, episode, task, args.neighbours)  # one search, k columns
    whole, kth = distances(every, nearest[:, 0]), distances(every, nearest[:, -1])
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(args.batches):
        rows = torch.as_tensor(rng.choice(len(sampler), args.batch_size, replace=False))
        batches.append(
            distances(rows, nearest_other_demonstrations(state[rows], episode[rows], task[rows])[:, 0])
        )
    print(f"{len(sampler)} training windows, {len(set(task.tolist()))} task(s)")
    for name, d in (
        ("nearest over the whole training set", whole),
        (f"{args.neighbours}-th nearest over the whole training set", kth),
        (f"nearest in batches of {args.batch_size}", torch.cat(batches)),
    ):
        print(f"partner {name}: distance median {d.median():.3f}, mean {d.mean():.3f}")


if __name__ == "__main__":
    main()
