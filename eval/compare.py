"""Paired comparison of two evaluations of the same tasks and seeds (`visuomotor compare`).

Two policies evaluated on the same seeds face the same initial states, so their episodes pair up. Pairing
removes the between-seed variance that makes two separate Wilson intervals overlap even when one policy is
better: only the discordant pairs (one succeeded, the other failed) carry information. Per task and overall
this module gives the difference of success rates, the exact McNemar test on the discordant pairs, and a
bootstrap interval of the difference that resamples seed pairs within each task.

Pure functions on plain data, so they are unit-tested without a simulator.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visuomotor.errors import InvalidInputError, MissingPathError
from visuomotor.eval.metrics import text_table

Pair = tuple[bool, bool]
"""(success of A, success of B) on one seed of one task."""


@dataclass(frozen=True)
class PairedSummary:
    label: str
    """Task id, or "all" for every pair pooled."""
    pairs: int
    successes_a: int
    successes_b: int
    only_a: int
    """Discordant pairs that A won."""
    only_b: int
    """Discordant pairs that B won."""
    p_value: float
    """Exact two-sided McNemar test (binomial on the discordant pairs, p = 1/2)."""
    diff_ci95: tuple[float, float] | None = None
    """Bootstrap 95% interval of rate(B) - rate(A); overall summary only."""

    @property
    def diff(self) -> float:
        """rate(B) - rate(A)."""
        return (self.successes_b - self.successes_a) / self.pairs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pairs": self.pairs,
            "success_rate_a": self.successes_a / self.pairs,
            "success_rate_b": self.successes_b / self.pairs,
            "diff": self.diff,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "mcnemar_p": self.p_value,
        }
        if self.diff_ci95 is not None:
            out["diff_ci95"] = list(self.diff_ci95)
        return out


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: twice the smaller binomial tail of the discordant pairs, capped
    at 1 (no discordant pair: 1)."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def summarize_pairs(label: str, pairs: Sequence[Pair]) -> PairedSummary:
    if not pairs:
        raise InvalidInputError(f"no paired episodes for {label}")
    only_a = sum(a and not b for a, b in pairs)
    only_b = sum(b and not a for a, b in pairs)
    return PairedSummary(
        label=label,
        pairs=len(pairs),
        successes_a=sum(a for a, _ in pairs),
        successes_b=sum(b for _, b in pairs),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact(only_a, only_b),
    )


def bootstrap_diff_ci(
    by_task: Mapping[str, Sequence[Pair]], rounds: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of rate(B) - rate(A) over all pairs, resampling the seed pairs of each
    task with replacement (stratified, so every resample keeps the tasks' weights)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    # A pair only moves the difference by +1 (B alone won), -1 (A alone won) or 0.
    deltas = [[int(b) - int(a) for a, b in pairs] for pairs in by_task.values()]
    total = sum(len(d) for d in deltas)
    if total == 0:
        raise ValueError("no paired episodes to bootstrap")
    rng = random.Random(seed)
    diffs = sorted(sum(sum(rng.choices(d, k=len(d))) for d in deltas if d) / total for _ in range(rounds))
    return diffs[int(0.025 * (rounds - 1))], diffs[math.ceil(0.975 * (rounds - 1))]


def load_episodes(path: str | Path) -> dict[tuple[str, int], bool]:
    """(env id, seed) -> success from an eval JSON (`visuomotor eval --json`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: no such evaluation file (write one with visuomotor eval --json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not JSON ({exc})") from exc
    episodes = data.get("episode_results") if isinstance(data, dict) else None
    if not isinstance(episodes, list):
        raise InvalidInputError(f"{path}: no episode_results list; is it the JSON of visuomotor eval --json?")
    out: dict[tuple[str, int], bool] = {}
    for i, ep in enumerate(episodes):
        try:
            key = (str(ep["env_id"]), int(ep["seed"]))
            success = ep["success"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{path}: episode_results[{i}] lacks env_id, seed or success ({exc})"
            ) from exc
        if not isinstance(success, bool):
            raise InvalidInputError(
                f"{path}: episode_results[{i}].success must be true or false, got {success!r}"
            )
        if key in out:
            raise InvalidInputError(f"{path}: episode_results[{i}] repeats {key[0]} seed {key[1]}")
        out[key] = success
    return out


def load_evaluations(paths: Sequence[str | Path]) -> dict[tuple[str, int], bool]:
    """The episodes of several eval JSONs of one policy pooled (e.g. two seed ranges); an episode in two
    of them is refused, since it would count twice."""
    if not paths:
        raise InvalidInputError("no evaluation file given")
    pooled: dict[tuple[str, int], bool] = {}
    for path in paths:
        episodes = load_episodes(path)
        both = sorted(set(pooled) & set(episodes))
        if both:
            raise InvalidInputError(
                f"{path}: {both[0][0]} seed {both[0][1]} is already in an earlier file of the same side"
            )
        pooled.update(episodes)
    return pooled


@dataclass(frozen=True)
class Comparison:
    per_task: dict[str, PairedSummary]
    overall: PairedSummary
    unpaired_a: int
    """Episodes of A with no episode of B on the same task and seed (left out)."""
    unpaired_b: int

    def to_json(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_json(),
            "per_task": {t: s.to_json() for t, s in self.per_task.items()},
            "unpaired_a": self.unpaired_a,
            "unpaired_b": self.unpaired_b,
        }


def compare(
    a: Mapping[tuple[str, int], bool], b: Mapping[tuple[str, int], bool], rounds: int = 10_000
) -> Comparison:
    """Pair the episodes of two evaluations on (task, seed) and summarise per task and overall."""
    common = [key for key in a if key in b]  # in the order of A's file: its tasks as it ran them
    if not common:
        raise InvalidInputError(
            "the two evaluations share no (task, seed) episode; evaluate both on the same --env and seeds"
        )
    by_task: dict[str, list[Pair]] = {}
    for key in common:
        by_task.setdefault(key[0], []).append((a[key], b[key]))
    overall = summarize_pairs("all", [p for pairs in by_task.values() for p in pairs])
    return Comparison(
        per_task={t: summarize_pairs(t, pairs) for t, pairs in by_task.items()},
        overall=dataclasses.replace(overall, diff_ci95=bootstrap_diff_ci(by_task, rounds)),
        unpaired_a=len(a) - len(common),
        unpaired_b=len(b) - len(common),
    )


def format_comparison(c: Comparison, name_a: str, name_b: str) -> str:
    """Plain-text table: per task the two success rates, B - A, the discordant pairs and McNemar p."""
    header = ("task", "pairs", name_a, name_b, "B - A", "only A", "only B", "McNemar p")
    rows = [
        (
            s.label,
            str(s.pairs),
            f"{s.successes_a / s.pairs:6.1%}",
            f"{s.successes_b / s.pairs:6.1%}",
            f"{100 * s.diff:+.1f} pt",
            str(s.only_a),
            str(s.only_b),
            f"{s.p_value:.3f}",
        )
        for s in [*c.per_task.values(), c.overall]
    ]
    out = [text_table(header, rows, total_last=True)]
    lo, hi = c.overall.diff_ci95 or (math.nan, math.nan)
    out.append(
        f"B - A overall: {100 * c.overall.diff:+.1f} points, bootstrap 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    )
    if c.unpaired_a or c.unpaired_b:
        out.append(
            f"left out (no episode on the same task and seed in the other file): A {c.unpaired_a}, B {c.unpaired_b}"
        )
    return "\n".join(out)
