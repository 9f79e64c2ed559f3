"""Cold start: seconds from a new Python process to its first result, and one worker's peak memory.

The child process does what a fresh Lambda execution environment does: import the recognize
handler (boto3, Powertools, the engine), load the dlib models, then analyse one photo and print
the first result. It then analyses every photo, as a warm worker would, and reports its peak RSS.

Usage: python benchmarks/cold_start.py [--faces DIR] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST_PHOTO = "people/obama/obama.jpg"


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def child(faces_dir: Path, started: float) -> None:
    """Runs in the new process: prints the first-result line, then the peak-memory line."""
    t0 = time.perf_counter()
    import handlers.recognize  # noqa: F401  the handler's imports, as Lambda's init phase runs them
    from bench_engine import photo_paths
    from shared.engine import models
    from shared.config import current_config
    from shared.engine.faces import find_faces
    from shared.engine.decode import decode_image

    t1 = time.perf_counter()
    cfg = current_config().engine
    models.hog_detector(), models.shape_predictor(), models.descriptor_session(cfg.ort_threads)
    t2 = time.perf_counter()
    faces = find_faces(decode_image((faces_dir / FIRST_PHOTO).read_bytes(), cfg), cfg)
    t3 = time.perf_counter()
    print(json.dumps({"first_result": time.time() - started, "imports": t1 - t0, "models": t2 - t1,
                      "first_image": t3 - t2, "faces": len(faces)}), flush=True)
    for path in photo_paths(faces_dir):
        find_faces(decode_image(path.read_bytes(), cfg), cfg)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


def run_once(faces_dir: Path, python: str = sys.executable) -> dict[str, float]:
    """Start a fresh process; its phases (s), the wall time to its first result and its peak RSS."""
    started = time.time()
    proc = subprocess.Popen(
        [python, str(Path(__file__).resolve()), "--child", "--faces", str(faces_dir), "--started", repr(started)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    first = json.loads(proc.stdout.readline() or "{}")
    wall = time.time() - started  # when the parent saw the first result
    last = json.loads(proc.stdout.readline() or "{}")
    if proc.wait() != 0 or "first_result" not in first or "peak_rss_mb" not in last:
        raise RuntimeError(f"the cold-start child failed (exit {proc.returncode})")
    interpreter = first["first_result"] - first["imports"] - first["models"] - first["first_image"]
    return {"seconds_to_first_result": wall, "interpreter": interpreter, "imports": first["imports"],
            "models": first["models"], "first_image": first["first_image"], "peak_rss_mb": last["peak_rss_mb"]}


def measure(faces_dir: Path, repeats: int = 3) -> dict[str, float]:
    """Medians over `repeats` fresh processes."""
    runs = [run_once(faces_dir) for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]} | {"runs": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.faces, args.started)
        return
    print(json.dumps(measure(args.faces, args.repeats), indent=2))


if __name__ == "__main__":
    main()
