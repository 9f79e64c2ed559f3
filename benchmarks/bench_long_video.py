"""A long video on the local stack: wall seconds per video second with 1 and 2 video workers, S3
bytes read per segment, and what a video hour costs on Lambda beside Rekognition Video's list price.

The video is composed with OpenCV from ../shared/faces (obama on the left, biden on the right, at
known times; a patch of noise changes every frame so the file grows with its length like a real
one), 640x360 at 25 fps, `--minutes` long. For each worker count a fresh `lambdaface local --workers
N` enrolls both people and recognises it once. Bytes per segment are what each segment reports
(`reads` in its partial, work/segments/...): its ranged GETs, index included.

Cost per video hour: the segments' measured seconds per video second, times 3600, at the template's
VideoMemorySize (Lambda bills GB-seconds), plus requests (per segment: 1 invocation, 3 SQS requests,
its ranged GETs, 1 PUT and 1 GET of its partial, about 1 DynamoDB write and 2 reads). Local seconds
stand for Lambda seconds: one ONNX Runtime thread per worker here and there.

Usage: python benchmarks/bench_long_video.py [--faces DIR] [--minutes 5] [--workers 1 2]
       [--segment-s 30] [--sample-fps 1] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from PIL import Image

from lambdaface.local.process import StackProcess
from lambdaface.template import load_template, parameter_defaults
from shared.pipeline import keys

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cost import PRICES_AS_OF, Prices  # noqa: E402

SIZE, FPS = (640, 360), 25.0
REKOGNITION_VIDEO_PER_MINUTE = 0.10  # stored video analysis (faces, face search), USD per minute, list price
PEOPLE = ("obama", "biden")


def schedule(seconds: float) -> dict[str, list[tuple[float, float]]]:
    """When each person is on screen: obama the first 40% and the last 20%, biden the middle 40%."""
    return {"obama": [(0.05 * seconds, 0.4 * seconds), (0.8 * seconds, seconds)], "biden": [(0.3 * seconds, 0.7 * seconds)]}


def compose(path: Path, faces: Path, seconds: float) -> Path:
    """The long video: each person's photo on their half of the frame when `schedule` says."""
    width, height = SIZE
    tiles = {}
    for person in PEOPLE:
        image = Image.open(faces / "people" / person / f"{person}2.jpg").convert("RGB")
        image.thumbnail((width // 2, height))
        canvas = Image.new("RGB", (width // 2, height), (40, 40, 40))
        canvas.paste(image, ((width // 2 - image.width) // 2, (height - image.height) // 2))
        tiles[person] = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
    spans, rng = schedule(seconds), np.random.default_rng(1)

    def frames() -> Iterator[np.ndarray]:
        for i in range(int(seconds * FPS)):
            t, frame = i / FPS, np.full((height, width, 3), 40, np.uint8)
            for half, person in enumerate(PEOPLE):
                if any(a <= t < b for a, b in spans[person]):
                    frame[:, half * width // 2 : (half + 1) * width // 2] = tiles[person]
            frame[height - 48 :, width // 2 - 64 : width // 2 + 64] = rng.integers(0, 256, (48, 128, 3), np.uint8)
            yield frame

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for frame in frames():
        writer.write(frame)
    writer.release()
    return path


def measure(faces: Path, video: Path, workers: int, env: dict[str, str]) -> dict[str, Any]:
    """Enroll, upload the video, time it to its result; the segments' reads."""
    with tempfile.TemporaryDirectory(prefix="bench-long-video-") as tmp:
        with StackProcess(Path(tmp) / "state", "--autosave", "0", workers=workers, env=env, new_session=True) as stack:
            s3 = stack.client("s3")
            for person in PEOPLE:
                key = f"models/{person}/{person}.jpg"
                s3.upload_file(str(faces / "people" / person / f"{person}.jpg"), stack.bucket, key)
                assert stack.result(key, timeout=300)["status"] == "succeeded"
            key = f"queries/bench/long-w{workers}.mp4"
            s3.upload_file(str(video), stack.bucket, key)
            uploaded = time.monotonic()
            doc = stack.result(key, timeout=3600, interval=0.5)
            wall = time.monotonic() - uploaded
            if doc.get("status") != "succeeded":
                raise RuntimeError(f"{key}: {doc.get('status')} {doc.get('error')}")
            partials = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=keys.WORK_PREFIX):
                partials += [json.loads(s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"].read())
                             for o in page.get("Contents", [])]
    reads = [p["reads"]["bytes"] for p in partials]
    return {
        "video_workers": workers, "wall_s": round(wall, 1), "duration_s": doc["duration_s"],
        "wall_per_video_s": round(wall / doc["duration_s"], 3), "segments": doc["segments"],
        "frames_sampled": doc["frames_sampled"], "segment_s_sum": round(doc["timings_ms"]["segments"] / 1000, 1),
        "bytes_per_segment": {"mean": round(sum(reads) / len(reads)), "max": max(reads), "min": min(reads)},
        "requests_per_segment": round(sum(p["reads"]["requests"] for p in partials) / len(partials), 1),
        "appearances": doc["appearances"],
    }


def cost_per_hour(run: dict[str, Any], memory_mb: int, prices: Prices = Prices()) -> dict[str, float]:
    """USD per video hour on Lambda at the run's settings, and Rekognition Video's list price."""
    scale = 3600 / run["duration_s"]
    segments = run["segments"] * scale
    compute = run["segment_s_sum"] * scale * memory_mb / 1024 * prices.lambda_gb_second
    requests = segments * (prices.lambda_request + 3 * prices.sqs_request + prices.s3_put
                           + (run["requests_per_segment"] + 1) * prices.s3_get
                           + 1.02 * prices.dynamodb_write_unit + 2 * prices.dynamodb_read_unit)
    return {"lambda": round(compute + requests, 4), "lambda_compute": round(compute, 4), "requests": round(requests, 4),
            "rekognition_video": round(60 * REKOGNITION_VIDEO_PER_MINUTE, 2)}


def markdown(result: dict[str, Any]) -> str:
    """The RESULTS.md section of a run (benchmarks/report.py can append it as is)."""
    size, settings = result["video_bytes"], result["settings"]
    lines = [
        f"### A long video ({settings['minutes']:g} min, {settings['size'][0]}x{settings['size'][1]}, {size / 1e6:.1f} MB)",
        "",
        f"Segments of {settings['LAMBDAFACE_SEGMENT_S']} s, {settings['LAMBDAFACE_SAMPLE_FPS']} sampled frame(s) per "
        f"second, {result['cores']} cores (load {result['load_average']:.1f}); Lambda at {settings['video_memory_mb']} MB.",
        "",
        "| video workers | wall s per video s | S3 bytes per segment (mean) | Lambda per video hour | Rekognition Video per hour |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        c, b = run["cost_per_video_hour_usd"], run["bytes_per_segment"]
        lines.append(f"| {run['video_workers']} | {run['wall_per_video_s']:.3f} | {b['mean']:,} of {size:,} "
                     f"({b['mean'] / size:.1%}) | ${c['lambda']:.3f} | ${c['rekognition_video']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path,
                        default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--segment-s", type=float, default=30.0)
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    env = {"LAMBDAFACE_SEGMENT_S": str(args.segment_s), "LAMBDAFACE_SAMPLE_FPS": str(args.sample_fps)}
    memory_mb = int(parameter_defaults(load_template(HERE.parent / "template.yaml"))["VideoMemorySize"])
    with tempfile.TemporaryDirectory(prefix="bench-long-video-") as tmp:
        video = compose(Path(tmp) / "long.mp4", args.faces, args.minutes * 60)
        size, runs = video.stat().st_size, []
        for workers in args.workers:
            print(f"bench-long-video: {workers} video worker(s) ...", file=sys.stderr, flush=True)
            runs.append(measure(args.faces, video, workers, env))
            runs[-1]["cost_per_video_hour_usd"] = cost_per_hour(runs[-1], memory_mb)
    result = {"cores": os.cpu_count(), "load_average": os.getloadavg()[0], "video_bytes": size,
              "settings": {**env, "size": SIZE, "fps": FPS, "minutes": args.minutes, "video_memory_mb": memory_mb},
              "prices": PRICES_AS_OF, "runs": runs}
    print(json.dumps(result, indent=1))
    print(markdown(result), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
