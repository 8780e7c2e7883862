"""What an EXPO checkpoint's on-the-fly (OTF) selection does on a store's states (BENCHMARKS.md, EXPO):
how often an edited candidate wins, by how much the critics prefer the best candidate over the others,
and how that preference compares with the critics' own disagreement.

OTF picks the argmax of the minimum over a random subset of critics among N base samples and their N
edits (architecture.md §EXPO). If the edits were pure noise and the critics exact, edited and base
candidates would win about equally often; a share well above a half with a value gap smaller than the
ensemble's spread says the critics favour perturbed actions for reasons the data cannot back.

    python experiments/expo_selection.py RUN_OR_CHECKPOINT STORE [--states 256] [--draws 4]

Prints one JSON object: the share of edited winners, the median gap between the winner and the best
candidate of the other kind, the median value range among one state's candidates, and the median
standard deviation over the ensemble of the winner's value.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch


def selection_stats(policy: Any, obs: dict[str, torch.Tensor], draws: int) -> dict[str, float]:
    """OTF statistics over `draws` selections on each state of `obs` (key -> (B, 1, ...))."""
    n = policy.config.num_samples
    edited, gaps, ranges, disagreement = [], [], [], []
    with torch.no_grad():
        cond = policy.condition(obs)
        for draw in range(draws):
            sel = policy.select(cond, torch.Generator().manual_seed(draw))
            values = sel.values
            ranges.append(values.max(1).values - values.min(1).values)
            disagreement.append(policy.critics(cond, sel.action).std(0))  # over all members
            if values.shape[1] > n:  # base candidates first, then their edits
                edited.append((values.argmax(1) >= n).float())
                gaps.append(values[:, n:].max(1).values - values[:, :n].max(1).values)
    out = {
        "states": int(cond.shape[0]),
        "draws": draws,
        "candidates": int(values.shape[1]),
        "value_range_median": _median(ranges),
        "ensemble_std_median": _median(disagreement),
    }
    if edited:
        out["edited_winner_share"] = round(torch.cat(edited).mean().item(), 3)
        out["best_edited_minus_best_base_median"] = _median(gaps)
    return out


def _median(parts: list[torch.Tensor]) -> float:
    return round(torch.cat(parts).median().item(), 5)


def store_states(policy: Any, store_path: str, states: int) -> dict[str, torch.Tensor]:
    """`states` frames spread evenly over the store, as the policy's single-step observations."""
    from visuomotor.datasets import EpisodeStore

    store = EpisodeStore.open(store_path)
    rows = np.linspace(0, store.num_frames - 1, states).astype(np.int64)
    return {
        key: torch.from_numpy(store.read_rows(key, rows)).float()[:, None] for key in policy.config.state_keys
    }


def main() -> None:
    from visuomotor.policies import load_policy

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="an EXPO online run or checkpoint (with critics)")
    parser.add_argument("store", help="the store whose states to select on (e.g. the demonstrations)")
    parser.add_argument("--states", type=int, default=256)
    parser.add_argument("--draws", type=int, default=4, help="selections per state (generator seeds 0..)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint).eval()
    if getattr(policy, "critics", None) is None or policy.actor is not None:
        raise SystemExit(
            f"{args.checkpoint}: no OTF selection (a BC checkpoint, or the rlpd baseline's actor)"
        )
    stats = selection_stats(policy, store_states(policy, args.store, args.states), args.draws)
    print(json.dumps({"checkpoint": args.checkpoint, **stats}, indent=2))


if __name__ == "__main__":
    main()
