"""Success statistics: the Wilson score interval and per-task summaries of rollout results.

Pure functions on plain numbers, so they are unit-tested without a simulator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: `k` successes in `n` trials.

    Unlike the normal approximation it stays inside [0, 1] and does not collapse to a point at k=0 or
    k=n, which matters at the 10-50 episodes an evaluation runs here (Wilson 1927; Brown, Cai & DasGupta
    2001 recommend it for small n). z=1.96 gives the 95% interval.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, got k={k}, n={n}")
    if z <= 0:
        raise ValueError(f"wilson_interval needs z > 0, got z={z}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp the rounding noise at the ends (k=0 gives lo=-1e-17, k=n gives hi=1+1e-16).
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class EpisodeResult:
    """What one rollout produced (returned by a worker; the unit every summary is built from)."""

    env_id: str
    """Single-task env id the episode ran in."""
    episode: int
    """Index of the episode within its task (0-based)."""
    seed: int
    """Seed passed to `env.reset`."""
    success: bool
    """True if `info["success"]` was true at any step."""
    episode_return: float
    """Sum of rewards over the executed steps."""
    length: int
    """Number of env steps executed (the episode stops at the first success or at the step limit)."""
    mean_inference_ms: float
    """Mean wall time of `policy.select_action` over the episode's steps."""
    video: str | None = None
    """Path of the episode's mp4, if one was recorded."""


@dataclass(frozen=True)
class TaskSummary:
    env_id: str
    episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_return: float
    mean_length: float
    mean_inference_ms: float

    def to_json(self) -> dict:
        return {
            "success_rate": self.success_rate,
            "ci95": list(self.ci95),
            "episodes": self.episodes,
            "successes": self.successes,
            "mean_return": self.mean_return,
            "mean_length": self.mean_length,
            "mean_inference_ms": self.mean_inference_ms,
        }


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def summarize_task(env_id: str, results: Sequence[EpisodeResult]) -> TaskSummary:
    """Success rate with its Wilson 95% interval, mean return/length/inference time of one task."""
    if not results:
        raise ValueError(f"no episodes to summarise for {env_id}")
    n = len(results)
    k = sum(r.success for r in results)
    return TaskSummary(
        env_id=env_id,
        episodes=n,
        successes=k,
        success_rate=k / n,
        ci95=wilson_interval(k, n),
        mean_return=_mean([r.episode_return for r in results]),
        mean_length=_mean([r.length for r in results]),
        mean_inference_ms=_mean([r.mean_inference_ms for r in results]),
    )


def summarize(results: Iterable[EpisodeResult]) -> tuple[TaskSummary, dict[str, TaskSummary]]:
    """Overall summary (all episodes pooled) and one summary per task, tasks in first-seen order."""
    results = list(results)
    by_task: dict[str, list[EpisodeResult]] = {}
    for r in results:
        by_task.setdefault(r.env_id, []).append(r)
    per_task = {tid: summarize_task(tid, rs) for tid, rs in by_task.items()}
    overall = summarize_task("all", results)
    return overall, per_task


def format_table(per_task: dict[str, TaskSummary], overall: TaskSummary | None = None) -> str:
    """A plain-text per-task table (task, episodes, success with 95% CI, return, length, inference ms)."""
    header = ("task", "episodes", "success", "95% CI", "return", "length", "infer ms")
    rows = [
        (
            s.env_id,
            str(s.episodes),
            f"{s.success_rate:6.1%}",
            f"[{s.ci95[0]:.2f}, {s.ci95[1]:.2f}]",
            f"{s.mean_return:.1f}",
            f"{s.mean_length:.1f}",
            f"{s.mean_inference_ms:.2f}",
        )
        for s in [*per_task.values(), *([overall] if overall is not None else [])]
    ]
    return text_table(header, rows, total_last=overall is not None)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], total_last: bool = False) -> str:
    """Columns padded to their widest cell, the first left-aligned and the rest right-aligned; with
    `total_last` a rule sets the last row (a total) apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = line(["-" * w for w in widths])
    out = [line(header), rule]
    for i, r in enumerate(rows):
        if total_last and i == len(rows) - 1:
            out.append(rule)
        out.append(line(r))
    return "\n".join(out)
