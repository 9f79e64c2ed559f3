"""`make bench`: every benchmark on this machine, then benchmarks/RESULTS.md and benchmarks/results.png.

Steps: the engine per stage with dlib's networks and with ONNX Runtime side by side, and the
MMOD CNN detector of each (bench_engine), cold start and peak memory (cold_start), the same
photos through face_recognition's command line (compare_fr), the local stack end to end
(burst; with 1 worker also without the annotated JPEG), the video clip fanned out over 1 and 2
workers (bench_video), and the cost model with and without the annotated JPEG (cost). Raw
figures go to benchmarks/results.json.

Usage: python benchmarks/run_all.py [--faces DIR] [--bench-venv .venv-bench] [--repeats 3]
       [--images 200] [--burst-runs 2] [--workers 1 2] [--video-runs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_engine
import bench_video
import burst
import cold_start
import compare_fr
import cost
import readme_speed
import report
from shared.config import EngineConfig, load_config

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    """Cores, CPU model, memory, Python and dlib versions, load at the start."""
    import dlib
    import onnxruntime

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 ** 2, 1),
            "python": platform.python_version(), "dlib": dlib.__version__, "onnxruntime": onnxruntime.__version__,
            "load_average": os.getloadavg()[0], "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def step(name: str, action):
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    value = action()
    print(f"bench: {name} took {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path,
                        default=Path(os.environ.get("LAMBDAFACE_FACES") or HERE.parent.parent / "shared" / "faces"))
    parser.add_argument("--bench-venv", type=Path, default=HERE.parent / ".venv-bench")
    parser.add_argument("--repeats", type=int, default=3, help="runs behind each engine figure (median)")
    parser.add_argument("--images", type=int, default=200, help="query uploads per burst")
    parser.add_argument("--burst-runs", type=int, default=2, help="bursts per worker count (median)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="recognize workers to try")
    parser.add_argument("--video-runs", type=int, default=2, help="clip uploads per video worker count (the last counts)")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md, results.png, results.json go")
    args = parser.parse_args()

    started = time.monotonic()
    paths = bench_engine.photo_paths(args.faces)
    results: dict = {"machine": machine(), "photos": len(paths),
                     "settings": {"repeats": args.repeats, "images": args.images, "burst_runs": args.burst_runs}}
    chosen = EngineConfig()
    settings = bench_engine.engine_settings(chosen)
    results["engine"] = step("engine per stage, dlib and onnx side by side", lambda: {
        **bench_engine.measure_side_by_side(paths, settings, args.repeats),
        "config": {"detect_max_side": chosen.detect_max_side, "upsample_below": chosen.upsample_below,
                   "ort_threads": chosen.ort_threads},
        "descriptor_agreement": bench_engine.descriptor_agreement(paths, chosen),
    })
    results["mmod"] = step("MMOD detector, dlib and onnx", lambda: bench_engine.measure_mmod(args.faces, args.repeats))
    results["match_100k_ms"] = step("matching 100k", bench_engine.measure_matching)
    results["cold_start"] = step("cold start", lambda: cold_start.measure(args.faces, args.repeats))
    results["face_recognition"] = step("face_recognition comparison",
                                       lambda: compare_fr.measure(args.faces, args.bench_venv, args.repeats))
    results["local"] = [step(f"local stack, {w} worker(s)",
                             lambda w=w: burst.measure_workers(args.faces, w, args.images, args.burst_runs))
                        for w in args.workers]
    no_jpeg = {"LAMBDAFACE_ANNOTATE": "false"}
    results["local_no_annotation"] = step(
        f"local stack, {args.workers[0]} worker(s), no annotated JPEG",
        lambda: burst.measure_workers(args.faces, args.workers[0], args.images, args.burst_runs, env=no_jpeg))
    video_cfg = load_config().video
    video = [step(f"video, {w} worker(s)", lambda w=w: bench_video.measure(args.faces, w, args.video_runs))
             for w in args.workers]
    results["video"] = {"measured": video, "segment_s": video_cfg.segment_s, "sample_fps": video_cfg.sample_fps,
                        "detect_max_side": video_cfg.detect_max_side, **bench_video.summary(video)}

    memory_mb = cost.recognize_memory_mb()
    seconds = {True: results["local"][0]["median"]["handler_ms_per_image"] / 1000,
               False: results["local_no_annotation"]["median"]["handler_ms_per_image"] / 1000}
    models = cost.by_annotation(seconds, memory_mb)
    batch = cost.recognize_batch_size()
    batched = cost.by_annotation(seconds, memory_mb, batch=batch)
    faces_per_image = results["engine"]["chosen"]["faces"] / len(paths)
    results["cost"] = {
        "model": models[True].to_dict(),  # with the annotated JPEG (the template's default)
        "per_1000_images": models[True].per_1000_images(),
        "without_annotation": {"model": models[False].to_dict(), "per_1000_images": models[False].per_1000_images()},
        "full_batches": {"batch_size": batch, "with_annotation": batched[True].per_1000_images(),
                         "without_annotation": batched[False].per_1000_images()},
        "cold_start_usd": models[True].cold_start_cost(results["cold_start"]["seconds_to_first_result"]),
        "faces_per_image": faces_per_image,
        "rekognition_per_1000_images": cost.rekognition_per_1000_images(faces_per_image),
        "prices_as_of": cost.PRICES_AS_OF,
    }
    results["duration_s"] = time.monotonic() - started
    results["machine"]["load_average_end"] = os.getloadavg()[0]

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot_python = args.bench_venv / "bin" / "python"
    subprocess.run([str(plot_python), str(HERE / "plot.py"), str(args.out / "results.json"),
                    str(args.out / "results.png")], check=True)
    (args.out / "RESULTS.md").write_text(report.render(results))
    if args.out.resolve() == HERE:  # the README's Speed paragraph says what results.json says
        readme_speed.rewrite(results)
    print(f"bench: wrote {args.out / 'RESULTS.md'} and results.png in {results['duration_s'] / 60:.1f} min",
          file=sys.stderr)


if __name__ == "__main__":
    main()
