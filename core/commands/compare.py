"""Compare two evaluations of the same tasks and seeds, episode by episode.

Both JSON files come from `visuomotor eval --json` on the same --env and seeds; episodes pair up on
(task, seed), so the comparison sees only where the two policies disagree. Prints per task the two
success rates, their difference (B - A), the discordant pairs and the exact McNemar p-value, and overall
a bootstrap 95% interval of the difference (seed pairs resampled within each task).

    visuomotor compare out/dp.json out/carp.json --names dp,carp --json out/dp_vs_carp.json
    visuomotor compare out/dp_0.json,out/dp_50.json out/carp_0.json,out/carp_50.json   # pooled
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visuomotor.errors import InvalidInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "a",
        metavar="A.json",
        help="the first evaluation (visuomotor eval --json); several, comma-separated, are pooled "
        "(e.g. the same policy on two --seed-offset ranges)",
    )
    parser.add_argument("b", metavar="B.json", help="the second evaluation(s), on the same tasks and seeds")
    parser.add_argument("--names", metavar="A,B", help="column names for the two (default: A,B)")
    parser.add_argument("--json", metavar="PATH", help="write the comparison as JSON here")
    parser.add_argument(
        "--rounds", type=int, default=10_000, help="bootstrap resamples for the interval (default 10,000)"
    )


def run(args: argparse.Namespace) -> int:
    from visuomotor.eval.compare import compare, format_comparison, load_evaluations

    names = [n.strip() for n in args.names.split(",")] if args.names else ["A", "B"]
    if len(names) != 2 or not all(names):
        raise InvalidInputError(f"--names takes two comma-separated names, got {args.names!r}")
    a, b = (load_evaluations([p for p in paths.split(",") if p]) for paths in (args.a, args.b))
    result = compare(a, b, rounds=args.rounds)
    print(format_comparison(result, *names))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"a": args.a, "b": args.b, "names": names, **result.to_json()}
        path.write_text(json.dumps(data, indent=2) + "\n")
    return 0
