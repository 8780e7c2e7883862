"""Run a benchmark and write its figures as JSON (see BENCHMARKS.md for the recorded results)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from visuomotor.commands import add_policy_override

# name -> module with run_benchmark(json_path, quick=...) -> dict
BENCHMARKS: dict[str, str] = {
    "dataload": "visuomotor.eval.bench.dataload",
    "sim": "visuomotor.eval.bench.sim",
    "latency": "visuomotor.eval.bench.latency",
    "tokenizer": "visuomotor.eval.bench.tokenizer",
    "frames": "visuomotor.eval.bench.frames",
    "train": "visuomotor.eval.bench.train",
    "server": "visuomotor.eval.bench.server",
    "deploy": "visuomotor.eval.bench.deploy",
    "fuzz": "visuomotor.eval.bench.fuzz",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="a tiny version (seconds), for smoke tests")
    parser.add_argument(
        "--store",
        default=None,
        help="dataload: measure this store instead of a synthetic one; tokenizer: its actions; frames: its "
        "episodes (held-out ones)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="tokenizer: the CARP run or checkpoint to measure; frames: the PAD one",
    )
    add_policy_override(parser, "-o num_inference_steps=50 (bench frames only)")


def _takes_overrides(name: str) -> bool:
    """A benchmark module that measures a checkpoint under changed inference fields says so."""
    return bool(getattr(importlib.import_module(BENCHMARKS[name]), "TAKES_OVERRIDES", False))


def run(args: argparse.Namespace) -> int:
    from visuomotor.configs import parse_overrides
    from visuomotor.errors import InvalidInputError

    if args.json_path:  # like eval --json: the folder is made if needed
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(BENCHMARKS[args.name])
    kwargs = {"store_path": args.store} if args.store else {}
    if args.checkpoint:
        kwargs["checkpoint"] = args.checkpoint
    if args.policy_override:
        if not _takes_overrides(args.name):
            takers = ", ".join(n for n in sorted(BENCHMARKS) if _takes_overrides(n))
            raise InvalidInputError(
                f"-o changes a checkpoint's inference fields: bench {takers} takes it, not {args.name}"
            )
        kwargs["overrides"] = parse_overrides(args.policy_override)
    result = module.run_benchmark(args.json_path, quick=args.quick, **kwargs)
    print(json.dumps(result, indent=2))
    return 0
