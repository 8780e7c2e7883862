"""Simulator throughput: env steps/s without rendering, frames/s at 64 and 128 px (Metaworld pick-place-v3,
robosuite Lift), and scripted collection episodes/minute (Metaworld MT10, 64 px, 2 workers).

Run as `visuomotor bench sim --json out.json`; the figures are written with the machine, date and command.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, metavar="PATH", help="write the figures here")
    parser.add_argument(
        "--quick", action="store_true", help="a seconds-long smoke version (numbers not quotable)"
    )


def run(args: argparse.Namespace) -> int:
    from visuomotor.eval.bench_sim import format_summary, run_benchmark

    result = run_benchmark(args.json, quick=args.quick)
    print(format_summary(result))
    return 0
