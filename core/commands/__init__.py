"""The CLI's subcommands (one module each, registered in `visuomotor.cli`), and arguments they share."""

from __future__ import annotations

import argparse


def add_policy_override(parser: argparse.ArgumentParser, example: str) -> None:
    """`-o FIELD=VALUE` (repeatable): a checkpoint's inference-time config field changed."""
    parser.add_argument(
        "-o",
        "--policy-override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"run the checkpoint with an inference-time config field changed, e.g. {example}; repeatable",
    )
