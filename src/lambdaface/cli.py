"""The `lambdaface` command line: one subcommand per module, each registered by `register()`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lambdaface import (add_face, audit, client, correct, engine_commands, find, invoke, merge, report, review, unknowns,
                        watch)
from lambdaface.local import command as local

# Each module exposes register(subparsers); a subcommand's parser sets `func(args) -> int`.
COMMAND_MODULES = [engine_commands, local, client, watch, invoke, report, unknowns, audit, find, merge, correct,
                   review, add_face]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lambdaface",
        description="Serverless face detection and recognition: engine, local stack and client.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; exit 0 when everything worked, 1 when something failed, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # refused keys, or none: one line instead of a traceback
        message = client.refusal_message(exc)
        if message is None:
            raise
        print(f"lambdaface: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
