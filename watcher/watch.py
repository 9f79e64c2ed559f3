#!/usr/bin/env python3
"""Watch the bucket's results/: one line per new result, or wait for jobs with --job KEY...

The same as `lambdaface watch` (see src/lambdaface/watch.py); run it with the project's venv:
    .venv/bin/python watcher/watch.py --endpoint-url http://127.0.0.1:4566 --bucket faces
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from lambdaface import watch  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="watch.py")
    watch.register(parser.add_subparsers())
    args = parser.parse_args(["watch", *argv])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
