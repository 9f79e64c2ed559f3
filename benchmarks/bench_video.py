"""Video on the local stack: wall seconds per second of video with 1 video worker and with 2.

For each worker count N, `lambdaface local --workers N` (N processes per function, so N video
workers) starts on a free port with a fresh state directory; lin_manuel_miranda and
alex_lacamoire are enrolled; then the 9 s Hamilton clip is uploaded `--runs` times under
distinct keys, one after the other (the first run also loads the models in the workers).
Wall = from the upload's PUT returning to its result document appearing (polled every 0.1 s).
The speedup compares the last runs. Default settings: segments of 3 s (`--segment-s`), 3 frames
per second, the CNN detector on 640 px frames. With 2 workers the clip's 4 segments (9, 9, 9 and 1
sampled frames) cannot split better than 18 + 10 frames: at most 28/18 = 1.56x.

Usage: python benchmarks/bench_video.py [--faces DIR] [--workers 1 2] [--runs 2] [--segment-s S] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lambdaface.local.process import StackProcess

HERE = Path(__file__).resolve().parent
CLIP = "video/short_hamilton_clip.mp4"
PEOPLE = (("lin_manuel_miranda", "lin1.png"), ("alex_lacamoire", "alex3.png"))


def run_clip(stack: StackProcess, clip: Path, key: str) -> dict[str, Any]:
    """Upload the clip at `key` and time it to its result (polled every 0.1 s)."""
    started = time.monotonic()
    stack.client("s3").upload_file(str(clip), stack.bucket, key)
    uploaded = time.monotonic()
    doc = stack.result(key, timeout=1800)
    seen = time.monotonic()
    if doc.get("status") != "succeeded":
        raise RuntimeError(f"{key}: {doc.get('status')} {doc.get('error')}")
    wall = seen - uploaded
    timings = doc["timings_ms"]
    return {
        "key": key, "upload_s": round(uploaded - started, 3), "wall_s": round(wall, 2),
        "duration_s": doc["duration_s"], "wall_per_video_s": round(wall / doc["duration_s"], 3),
        "pipeline_s": round(timings["total"] / 1000, 2), "segments": doc["segments"],
        "frames_sampled": doc["frames_sampled"], "segment_s_sum": round(timings["segments"] / 1000, 2),
        "slowest_segment_s": round(timings["slowest_segment"] / 1000, 2),
        "s_per_frame": round(timings["segments"] / 1000 / doc["frames_sampled"], 3),
        "people": doc["people"], "appearances": doc["appearances"],
    }


def measure(faces: Path, video_workers: int, runs: int, segment_s: float | None = None) -> dict[str, Any]:
    """Start a stack with `video_workers` video workers, enroll, then time the clip `runs` times."""
    env = {"LAMBDAFACE_SEGMENT_S": str(segment_s)} if segment_s else {}  # the stack passes LAMBDAFACE_* on
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        with StackProcess(Path(tmp) / "state", "--autosave", "0", workers=video_workers, env=env,
                          new_session=True) as stack:
            for person, photo in PEOPLE:
                key = f"models/{person}/{photo}"
                stack.client("s3").upload_file(str(faces / "people" / person / photo), stack.bucket, key)
                doc = stack.result(key, timeout=300)
                assert doc["status"] == "succeeded", doc
            results = [run_clip(stack, faces / CLIP, f"queries/bench/w{video_workers}/run{r}.mp4") for r in range(runs)]
            processes = len(stack.worker_pids("VideoFunction"))
    return {"video_workers": video_workers, "video_processes": processes, "runs": results}


def summary(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall seconds per video second of the last run per worker count, and each speedup over the first."""
    last = {m["video_workers"]: m["runs"][-1] for m in measured}
    base = measured[0]["video_workers"]
    return {
        "wall_per_video_s": {w: r["wall_per_video_s"] for w, r in last.items()},
        "speedup": {w: round(last[base]["wall_s"] / r["wall_s"], 2) for w, r in last.items() if w != base},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path,
                        default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="video workers to try")
    parser.add_argument("--runs", type=int, default=2, help="clip uploads per worker count (the last one counts)")
    parser.add_argument("--segment-s", type=float, default=None, help="seconds per segment (default: the template's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    measured, load_at_start = [], os.getloadavg()[0]  # other processes on the machine skew the figures
    for workers in args.workers:
        print(f"bench-video: {workers} video worker(s) ...", file=sys.stderr, flush=True)
        measured.append(measure(args.faces, workers, args.runs, args.segment_s))
        for run in measured[-1]["runs"]:
            print(f"  {run['key']}: {run['wall_s']:.1f} s for {run['duration_s']:.2f} s of video "
                  f"({run['wall_per_video_s']:.2f} s per video second; {run['segments']} segments, "
                  f"{run['frames_sampled']} frames, {run['s_per_frame']:.2f} s per frame)", file=sys.stderr, flush=True)
    result = {"cores": os.cpu_count(), "load_average": [load_at_start, os.getloadavg()[0]], "segment_s": args.segment_s,
              "measured": measured, **summary(measured)}
    print(json.dumps(result, indent=1))
    for workers, per_second in result["wall_per_video_s"].items():
        print(f"{workers} video worker(s): {per_second:.2f} wall s per video s", file=sys.stderr)
    for workers, speedup in result["speedup"].items():
        print(f"speedup with {workers} workers: {speedup:.2f}x", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
