"""`make demo`: the original AWSLambdaFace example on the local stack.

Starts `lambdaface local` on a free port, enrolls seed/john0.jpg as john, recognizes john1.jpg,
john2.jpg and jim-carrey.jpg with the client commands, prints a table and where the annotated
images are, and stops the stack. Exits 1 if the answers are not True, True, False.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from lambdaface.local.process import StackProcess
from shared.config import FACES_ENV

ROOT = Path(__file__).resolve().parent.parent
QUERIES = {"john1.jpg": True, "john2.jpg": True, "jim-carrey.jpg": False}


def lambdaface(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Show a command, run it, return its output."""
    print(f"$ lambdaface {' '.join(shlex.quote(a) for a in args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "lambdaface.cli", *args], env=env, capture_output=True, text=True)


def distance_to(doc: dict, person: str) -> float | None:
    """The smallest distance between a face of the result and `person`."""
    found = [c["distance"] for f in doc.get("faces", []) for c in f.get("candidates", []) if c["person"] == person]
    return min(found) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get(FACES_ENV) or ROOT.parent / "shared" / "faces"))
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args()
    seed = args.faces.resolve() / "seed"
    if not (seed / "john0.jpg").is_file():
        print(f"demo: {seed}/john0.jpg not found (set LAMBDAFACE_FACES)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="lambdaface-demo-") as state:
        try:
            stack = StackProcess(Path(state) / "state", stderr_path=args.out / "local.log")
        except AssertionError:
            print(f"demo: the local stack did not start; see {args.out / 'local.log'}", file=sys.stderr)
            return 1
        try:
            return run_demo(stack, seed, args.out)
        finally:
            stack.stop(signal.SIGINT)


def run_demo(stack: StackProcess, seed: Path, out: Path) -> int:
    """Enroll john, recognize the three queries, print the table; 0 when the answers are right."""
    print(f"local stack: {stack.endpoint}, bucket {stack.bucket} (log: {out / 'local.log'})\n")
    env = stack.client_env()
    enrolled = lambdaface("enroll", "john", str(seed / "john0.jpg"), env=env)
    print(enrolled.stdout + enrolled.stderr)
    if enrolled.returncode != 0:
        return 1
    recognized = lambdaface(
        "recognize", "--person", "john", "--json", "--out", str(out), *(str(seed / q) for q in QUERIES), env=env
    )
    if recognized.returncode != 0:
        print(recognized.stdout + recognized.stderr)
        return 1
    docs = {Path(d["source"]).name: d for d in map(json.loads, (l for l in recognized.stdout.splitlines() if l.startswith("{")))}
    matches = dict(re.findall(r"^(\S+): Faces match: (True|False)$", recognized.stdout, re.M))

    print(f"\n{'image':<16} {'match':<6} {'distance to john':>16}")
    for name, expected in QUERIES.items():
        distance = distance_to(docs[name], "john")
        shown = f"{distance:.3f}" if distance is not None else "-"
        print(f"{name:<16} {matches.get(name, '?'):<6} {shown:>16}")
    print("\nannotated images:")
    for name in QUERIES:
        print(f"  {out / Path(docs[name]['annotated']).name}   (s3://{stack.bucket}/{docs[name]['annotated']})")
    ok = all(matches.get(name) == str(expected) for name, expected in QUERIES.items())
    print("\nas expected: True, True, False" if ok else "\nUNEXPECTED: expected True, True, False")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
