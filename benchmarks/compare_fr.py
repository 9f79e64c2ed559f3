"""The same photos through face_recognition's command line and through `lambdaface compare`.

Both commands get one known face (seed/john0.jpg) and every still photo of labels.csv, run as
fresh processes (start-up and model loading included), one after the other, `--repeats` times.
face_recognition comes from a separate venv (`make bench` builds .venv-bench: face_recognition
installed with --no-deps, its dlib from dlib-bin).

Usage: python benchmarks/compare_fr.py [--faces DIR] [--bench-venv .venv-bench] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_engine import photo_paths

HERE = Path(__file__).resolve().parent
KNOWN = "seed/john0.jpg"
KNOWN_NAME = "john0"


@dataclass(frozen=True)
class Run:
    """One run of one tool: wall seconds, faces found and matches with the known face, per image."""

    seconds: float
    faces: dict[str, int]
    matches: dict[str, int]


def link_photos(faces_dir: Path, work: Path) -> tuple[Path, Path, dict[str, str]]:
    """known/john0.jpg and unknown/<flattened path> as symlinks; {link name: labels.csv path}."""
    known, unknown = work / "known", work / "unknown"
    known.mkdir()
    unknown.mkdir()
    (known / f"{KNOWN_NAME}.jpg").symlink_to(faces_dir / KNOWN)
    names = {}
    for path in photo_paths(faces_dir):
        rel = path.relative_to(faces_dir).as_posix()
        name = rel.replace("/", "__")
        (unknown / name).symlink_to(path)
        names[name] = rel
    return known, unknown, names


def parse_face_recognition(stdout: str, names: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """face_recognition prints `path,name` per face (`unknown_person`), or `path,no_persons_found`."""
    faces, matches = dict.fromkeys(names.values(), 0), dict.fromkeys(names.values(), 0)
    for line in stdout.splitlines():
        path, _, name = line.rpartition(",")
        if not path:
            continue
        rel = names[Path(path).name]
        if name != "no_persons_found":
            faces[rel] += 1
        if name == KNOWN_NAME:
            matches[rel] += 1
    return faces, matches


def parse_lambdaface(stdout: str, names: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """`lambdaface compare` prints one JSON line per image: faces, and match (the nearest face)."""
    faces, matches = dict.fromkeys(names.values(), 0), dict.fromkeys(names.values(), 0)
    for line in stdout.splitlines():
        record = json.loads(line)
        rel = names[Path(record["image"]).name]
        faces[rel] = record.get("faces", 0)
        matches[rel] = int(bool(record.get("match")))
    return faces, matches


def timed_run(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def expected_faces(faces_dir: Path) -> dict[str, int]:
    """The `faces` column of labels.csv, per still photo."""
    with open(faces_dir / "labels.csv", newline="") as handle:
        return {r["path"]: int(r["faces"]) for r in csv.DictReader(handle) if r["faces"]}


def measure(faces_dir: Path, bench_venv: Path, repeats: int = 3) -> dict:
    """Median images per second of each tool (same run, alternating), faces each found."""
    fr_command = bench_venv / "bin" / "face_recognition"
    lf_command = Path(sys.executable).parent / "lambdaface"
    if not fr_command.exists():
        raise FileNotFoundError(f"{fr_command} is missing: run `make bench` (it builds {bench_venv})")
    runs: dict[str, list[Run]] = {"face_recognition": [], "lambdaface": []}
    with tempfile.TemporaryDirectory(prefix="bench-fr-") as tmp:
        known, unknown, names = link_photos(faces_dir, Path(tmp))
        unknown_files = sorted(str(p) for p in unknown.iterdir())
        for _ in range(repeats):
            seconds, out = timed_run([str(fr_command), str(known), str(unknown)])
            runs["face_recognition"].append(Run(seconds, *parse_face_recognition(out, names)))
            seconds, out = timed_run([str(lf_command), "compare", str(known / f"{KNOWN_NAME}.jpg"), *unknown_files])
            runs["lambdaface"].append(Run(seconds, *parse_lambdaface(out, names)))
    expected = expected_faces(faces_dir)
    n = len(names)
    result: dict = {"images": n, "repeats": repeats, "expected_faces": sum(expected.values())}
    for tool, tool_runs in runs.items():
        seconds = statistics.median(r.seconds for r in tool_runs)
        faces = tool_runs[0].faces
        result[tool] = {
            "seconds": seconds,
            "images_per_s": n / seconds,
            "faces": sum(faces.values()),
            "images_with_expected_faces": sum(faces[p] == expected.get(p) for p in faces),
            "matches_with_known": sum(tool_runs[0].matches.values()),
            "per_image_faces": faces,
        }
    result["ratio_images_per_s"] = result["lambdaface"]["images_per_s"] / result["face_recognition"]["images_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path,
                        default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--bench-venv", type=Path, default=HERE.parent / ".venv-bench")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.faces, args.bench_venv, args.repeats), indent=2))


if __name__ == "__main__":
    main()
