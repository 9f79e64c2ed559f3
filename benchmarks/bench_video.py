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
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3

HERE = Path(__file__).resolve().parent
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
CLIP = "video/short_hamilton_clip.mp4"
PEOPLE = (("lin_manuel_miranda", "lin1.png"), ("alex_lacamoire", "alex3.png"))


class Stack:
    """`lambdaface local` in a child process with `video_workers` video workers."""

    def __init__(self, video_workers: int, state_dir: Path, segment_s: float | None = None) -> None:
        command = [str(Path(sys.executable).parent / "lambdaface"), "local", "--port", "0", "--autosave", "0",
                   "--workers", str(video_workers), "--state-dir", str(state_dir), "--bucket", "faces"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if segment_s:  # the stack passes LAMBDAFACE_* settings of its own environment to the functions
            env["LAMBDAFACE_SEGMENT_S"] = str(segment_s)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True)
        self.video_pids: list[int] = []
        self.endpoint = ""
        ready = threading.Event()

        def read_stdout() -> None:
            for line in self.proc.stdout:
                if found := re.search(r"ready at (http://\S+)", line):
                    self.endpoint = found[1]
                    ready.set()

        def read_stderr() -> None:
            for line in self.proc.stderr:
                if found := re.search(r"worker \d+ \(VideoFunction\) started, pid (\d+)", line):
                    self.video_pids.append(int(found[1]))

        for target in (read_stdout, read_stderr):
            threading.Thread(target=target, daemon=True).start()
        if not ready.wait(180):
            self.stop()
            raise RuntimeError("lambdaface local did not become ready")
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, **CREDENTIALS)

    def result(self, key: str, timeout: float) -> tuple[dict[str, Any], float]:
        """The result of `key` once it appears, and time.monotonic() when it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = self.s3.get_object(Bucket="faces", Key=f"results/{key}.json")["Body"].read()
                return json.loads(body), time.monotonic()
            except self.s3.exceptions.NoSuchKey:
                time.sleep(0.1)
        raise TimeoutError(f"no result for {key} after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_clip(stack: Stack, clip: Path, key: str) -> dict[str, Any]:
    """Upload the clip at `key` and time it to its result."""
    started = time.monotonic()
    stack.s3.upload_file(str(clip), "faces", key)
    uploaded = time.monotonic()
    doc, seen = stack.result(key, timeout=1800)
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
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        stack = Stack(video_workers, Path(tmp) / "state", segment_s)
        try:
            for person, photo in PEOPLE:
                key = f"models/{person}/{photo}"
                stack.s3.upload_file(str(faces / "people" / person / photo), "faces", key)
                doc, _ = stack.result(key, timeout=300)
                assert doc["status"] == "succeeded", doc
            results = [run_clip(stack, faces / CLIP, f"queries/bench/w{video_workers}/run{r}.mp4") for r in range(runs)]
            processes = len(stack.video_pids)
        finally:
            stack.stop()
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
