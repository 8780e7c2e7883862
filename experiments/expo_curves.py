"""EXPO against its baselines (RLPD-style SAC, best-of-N, BC) from the online runs' learning curves
(BENCHMARKS.md, EXPO): success against environment steps per task, the mean over seeds with the min-max
band, the env steps each method needs to reach a success rate (the issue's 90%), and whether EXPO ever
fell below its starting (BC) success by more than that evaluation's 95% interval.

Every online run (`visuomotor train --policy expo --env ... --online-steps N`) writes run.json and
curves.json; this script reads every run directory under ROOT that has both, and groups them by
algorithm and env from run.json (the seed from its online config).

    python experiments/expo_curves.py runs --out out/expo [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ORDER = ("expo", "rlpd", "best_of_n", "bc")
PROTOCOL = {
    "seed",
    "online_steps",
    "eval_every",
    "eval_episodes",
    "save_every",
    "log_every",
    "keep_checkpoints",
    "max_episode_steps",  # the task's time limit: the same for every method of a comparison
}
LABELS = {"expo": "EXPO", "rlpd": "RLPD-style SAC", "best_of_n": "best-of-N (beta 0)", "bc": "BC only"}


def load_runs(root: Path) -> dict[tuple[str, str], dict[int, list[dict[str, Any]]]]:
    """{(method, env_id): {seed: curve}} for every finished-or-not online run under root."""
    runs: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    for run_json in sorted(root.glob("*/run.json")):
        meta = json.loads(run_json.read_text())
        curves = run_json.parent / "curves.json"
        if meta.get("kind") != "online" or not curves.exists():
            continue
        seed = int(meta["online_config"]["seed"])
        runs[(method(meta), meta["env_id"])][seed] = json.loads(curves.read_text())
    return runs


def method(meta: dict[str, Any]) -> str:
    """The run's algorithm, with the learner settings it changed from its preset (seeds and the evaluation
    protocol aside) and its policy overrides, so that a variant (e.g. expo init_temperature=0.01, expo
    edit_scale=0.3) is its own method."""
    from visuomotor.policies.expo.config import ONLINE_PRESETS, OnlineConfig

    preset = dataclasses.asdict(OnlineConfig(**ONLINE_PRESETS[meta["preset"]]))
    # A run recorded before a setting existed ran with its dataclass default (e.g. critic_warmup 0).
    ran = dataclasses.asdict(OnlineConfig()) | meta["online_config"]
    algorithm = meta["policy_config"]["algorithm"]
    moot = {"critic_warmup"} if algorithm in ("bc", "rlpd") else set()  # nothing selects with critics
    changed = [f"{k}={v}" for k, v in sorted(ran.items()) if k not in PROTOCOL | moot and preset.get(k) != v]
    changed += [f"{k}={v}" for k, v in sorted(meta["policy_overrides"].items()) if k != "algorithm"]
    return " ".join([algorithm, *changed])


def steps_to(curve: list[dict[str, Any]], threshold: float) -> int | None:
    """The first evaluated env step at which the success rate reached `threshold`; None if never."""
    return next((c["env_steps"] for c in curve if c["success_rate"] >= threshold), None)


def fell_below_start(curve: list[dict[str, Any]]) -> bool:
    """Some later evaluation lies below the lower end of the step-0 evaluation's 95% interval."""
    start_low = curve[0]["ci95"][0]
    return any(c["success_rate"] < start_low for c in curve[1:])


def summarise(seeds: dict[int, list[dict[str, Any]]], threshold: float) -> dict[str, Any]:
    """Mean/min/max success at the env steps every seed evaluated, and per-seed steps to threshold."""
    common = sorted(set.intersection(*({c["env_steps"] for c in curve} for curve in seeds.values())))
    table = np.array(
        [
            [next(c["success_rate"] for c in curve if c["env_steps"] == s) for s in common]
            for curve in seeds.values()
        ]
    )
    return {
        "seeds": sorted(seeds),
        "env_steps": common,
        "mean": table.mean(0).round(4).tolist(),
        "min": table.min(0).tolist(),
        "max": table.max(0).tolist(),
        "steps_to_threshold": {s: steps_to(curve, threshold) for s, curve in sorted(seeds.items())},
        "fell_below_start": {s: fell_below_start(curve) for s, curve in sorted(seeds.items())},
    }


def ordered(methods: Iterable[str]) -> list[str]:
    """EXPO, then the baselines, each followed by its variants (a method is 'algorithm [settings]')."""

    def key(m: str) -> tuple[int, str]:
        algorithm = m.split()[0]
        return (ORDER.index(algorithm) if algorithm in ORDER else len(ORDER), m)

    return sorted(set(methods), key=key)


def all_methods(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Every method that ran on any task, in `ordered` order."""
    return ordered(m for by_method in summary.values() for m in by_method)


def plot(summary: dict[str, dict[str, dict[str, Any]]], out: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(summary)
    methods = all_methods(summary)
    colors = {m: f"C{i}" for i, m in enumerate(methods)}  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for algorithm in ordered(summary[env]):
            s = summary[env][algorithm]
            label = LABELS.get(algorithm, algorithm)
            ax.plot(s["env_steps"], s["mean"], marker="o", ms=3, label=label, color=colors[algorithm])
            ax.fill_between(s["env_steps"], s["min"], s["max"], color=colors[algorithm], alpha=0.2)
        ax.axhline(threshold, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        ax.set_title(env.split("/")[-1], fontsize=9)
        ax.set_xlabel("environment steps")
    axes[0][0].set_ylabel("success rate (mean, min-max over seeds)")
    handles = [plt.Line2D([], [], color=colors[m], marker="o", ms=3) for m in methods]
    ncol = min(len(methods), 2 * len(envs))  # a one-task figure is too narrow for one row of labels
    fig.legend(handles, [LABELS.get(m, m) for m in methods], fontsize=7, loc="upper right", ncol=ncol)
    rows = math.ceil(len(methods) / ncol)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.06 * rows))
    fig.savefig(out / "expo_curves.png", dpi=110)
    plt.close(fig)


def markdown(summary: dict[str, dict[str, dict[str, Any]]], threshold: float) -> str:
    """One row per task and method: success at the start and at the end (mean [min, max] over seeds)."""
    rows = [
        f"| task | method | seeds | start | end, mean [min, max] | env steps to {threshold:.0%} |",
        "|---|---|---|---|---|---|",
    ]
    for env, by_algorithm in sorted(summary.items()):
        for algorithm in ordered(by_algorithm):
            s = by_algorithm[algorithm]
            reached = [v for v in s["steps_to_threshold"].values() if v is not None]
            to = f"{len(reached)}/{len(s['seeds'])} seeds" + (
                f", mean {np.mean(reached):,.0f}" if reached else ""
            )
            end = f"{s['mean'][-1]:.0%} [{s['min'][-1]:.0%}, {s['max'][-1]:.0%}] at {s['env_steps'][-1]:,}"
            label = LABELS.get(algorithm, algorithm)
            rows.append(
                f"| {env.split('/')[-1]} | {label} | {len(s['seeds'])} | {s['mean'][0]:.0%} | {end} | {to} |"
            )
    rows.append("")
    rows.append("| method | tasks | mean over tasks, start -> end |")
    rows.append("|---|---|---|")
    for algorithm in all_methods(summary):
        runs = [by[algorithm] for by in summary.values() if algorithm in by]
        start, end = np.mean([s["mean"][0] for s in runs]), np.mean([s["mean"][-1] for s in runs])
        rows.append(f"| {LABELS.get(algorithm, algorithm)} | {len(runs)} | {start:.1%} -> {end:.1%} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="directory holding the online run directories")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    runs = load_runs(args.root)
    if not runs:
        raise SystemExit(f"{args.root}: no online runs (directories with run.json and curves.json)")
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (algorithm, env), seeds in sorted(runs.items()):
        summary[env][algorithm] = summarise(seeds, args.threshold)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "expo_curves.json").write_text(json.dumps(summary, indent=2))
    plot(summary, args.out, args.threshold)
    print(markdown(summary, args.threshold))
    for env, by_algorithm in sorted(summary.items()):
        for algorithm in ordered(by_algorithm):
            s = by_algorithm[algorithm]
            curve = " ".join(f"{m:.2f}" for m in s["mean"])
            print(
                f"{env:32s} {algorithm:10s} seeds {s['seeds']} mean success at {s['env_steps']}: {curve}; "
                f"steps to {args.threshold:.0%}: {list(s['steps_to_threshold'].values())}; "
                f"fell below start: {sum(s['fell_below_start'].values())}/{len(s['seeds'])}"
            )


if __name__ == "__main__":
    main()
