"""The `visuomotor` command line: one entry point, one explicit registry of subcommands.

Each subcommand lives in `visuomotor.commands.<name>` and exposes `add_arguments(parser)` and
`run(args) -> int`. Heavy imports (torch, simulators) stay inside `run`, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from visuomotor import __version__
from visuomotor.errors import UserError

# name -> (module, one-line help). Explicit on purpose (architecture.md §Layout): no discovery by
# naming convention.
COMMANDS: dict[str, tuple[str, str]] = {
    "dataset": ("visuomotor.commands.dataset", "inspect and convert episode stores"),
    "collect": (
        "visuomotor.commands.collect",
        "collect scripted-expert demonstrations into an episode store",
    ),
    "eval": ("visuomotor.commands.eval", "evaluate a policy in simulation (success rate, videos, JSON)"),
    "compare": (
        "visuomotor.commands.compare",
        "compare two evaluations on the same seeds, episode by episode (paired)",
    ),
    "train": ("visuomotor.commands.train", "train a policy on an episode store"),
    "deploy": ("visuomotor.commands.deploy", "run a trained policy on a robot (or a simulated one), safely"),
    "record": ("visuomotor.commands.record", "record demonstrations on a robot from a teleoperator"),
    "serve": ("visuomotor.commands.serve", "serve a trained policy for remote inference (WebSocket)"),
    "export": ("visuomotor.commands.export", "export a checkpoint with a model card, for the Hub"),
    "bench": ("visuomotor.commands.bench", "run a benchmark and write its figures as JSON"),
    "demo": ("visuomotor.commands.demo", "run the end-to-end quickstart on a small default"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visuomotor",
        description="Train visuomotor policies from demonstrations; evaluate them in Metaworld, robosuite.",
    )
    parser.add_argument("--version", action="version", version=f"visuomotor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        # A mistake in what the user gave (store, id, flag, field): one line that names it. Anything
        # else is a bug or a broken environment and keeps its traceback (architecture.md §Conventions).
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
