"""Evaluation: rollout runner, success metrics, videos, paired comparison and benchmarks.

    from visuomotor.eval import PolicySpec, evaluate, wilson_interval

    report = evaluate("metaworld/reach-v3", PolicySpec(name="scripted"), episodes=20)
    print(report.table(), report.overall.success_rate, report.overall.ci95)

Modules: `metrics` (Wilson interval, summaries), `policies` (Policy protocol, reference policies),
`rollout` (parallel runner, JSON, plot), `video`, `compare` (paired comparison of two evaluations),
`bench/` (the `visuomotor bench` benchmarks). The worker pool is `visuomotor.sim.workers`. Importing
this package loads neither torch nor a simulator.
"""

from visuomotor.eval.metrics import EpisodeResult, TaskSummary, summarize, wilson_interval
from visuomotor.eval.policies import REFERENCE_POLICIES, PolicySpec, RolloutPolicy
from visuomotor.eval.rollout import EVAL_SEED_BASE, EnvConfig, EvalReport, eval_seed, evaluate

__all__ = [
    "EVAL_SEED_BASE",
    "REFERENCE_POLICIES",
    "EnvConfig",
    "EpisodeResult",
    "EvalReport",
    "PolicySpec",
    "RolloutPolicy",
    "TaskSummary",
    "eval_seed",
    "evaluate",
    "summarize",
    "wilson_interval",
]
