"""Engine benchmark: ms per image for each stage, at full-size detection and at the chosen downscale.

Usage: python benchmarks/bench_engine.py [--faces ../shared/faces] [--repeats 3] [--json OUT]
Figures are medians over the repeats; nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from shared.config import EngineConfig
from shared.engine.faces import find_faces
from shared.engine.decode import decode_image
from shared.engine.matching import Gallery, identify

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("decode", "detect", "landmarks", "embed")


def photo_paths(faces_dir: Path) -> list[Path]:
    """Every still photo listed in labels.csv."""
    with open(faces_dir / "labels.csv", newline="") as handle:
        return [faces_dir / row["path"] for row in csv.DictReader(handle) if not row["path"].endswith(".mp4")]


def run_once(paths: list[Path], cfg: EngineConfig) -> tuple[dict[str, float], int, float]:
    """Total ms per stage, faces found and wall seconds for one pass over the photos."""
    totals = dict.fromkeys(STAGES, 0.0)
    faces = 0
    start = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        t0 = time.perf_counter()
        image = decode_image(data, cfg)
        totals["decode"] += (time.perf_counter() - t0) * 1000
        faces += len(find_faces(image, cfg, timings=totals))
    return totals, faces, time.perf_counter() - start


def measure(paths: list[Path], cfg: EngineConfig, repeats: int) -> dict:
    """Median ms per image for each stage, images per second, faces found."""
    runs = [run_once(paths, cfg) for _ in range(repeats)]
    n = len(paths)
    per_image = {s: statistics.median(r[0][s] for r in runs) / n for s in STAGES}
    wall = statistics.median(r[2] for r in runs)
    faces = runs[0][1]
    return {"ms_per_image": per_image, "total_ms_per_image": wall * 1000 / n, "images_per_s": n / wall,
            "faces": faces, "ms_per_face": {s: per_image[s] * n / max(faces, 1) for s in STAGES}}


def measure_matching(gallery_size: int = 100_000, repeats: int = 20) -> float:
    """Median ms to identify one face against `gallery_size` enrolled faces."""
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(gallery_size, 128)).astype(np.float32)
    gallery = Gallery.from_pairs((f"person{i // 5}", e) for i, e in enumerate(embeddings))
    query = embeddings[12345]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        identify(query, gallery)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_faces = os.environ.get("LAMBDAFACE_FACES") or str(ROOT.parent / "shared" / "faces")
    parser.add_argument("--faces", default=default_faces, help="folder with labels.csv (default: ../shared/faces)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    paths = photo_paths(Path(args.faces))
    chosen = EngineConfig()
    settings = {
        "full size (upsample 1, face_recognition's default)": EngineConfig(detect_max_side=100_000,
                                                                           upsample_below=100_000),
        "full size (upsample 0)": EngineConfig(detect_max_side=100_000, upsample_below=0),
        f"chosen (max side {chosen.detect_max_side}, upsample below {chosen.upsample_below})": chosen,
    }
    print(f"{len(paths)} photos from {args.faces}; medians of {args.repeats} runs; {os.cpu_count()} cores")
    header = f"{'detection':55s} " + " ".join(f"{s:>9s}" for s in STAGES) + f" {'total':>8s} {'img/s':>6s} faces"
    print(header + "\n" + "-" * len(header))
    results = {}
    for name, cfg in settings.items():
        r = results[name] = measure(paths, cfg, args.repeats)
        stages = " ".join(f"{r['ms_per_image'][s]:9.1f}" for s in STAGES)
        print(f"{name:55s} {stages} {r['total_ms_per_image']:8.1f} {r['images_per_s']:6.2f} {r['faces']:5d}", flush=True)
    full, fast = results[next(iter(settings))], results[list(settings)[-1]]
    print(f"\nchosen detection is {full['ms_per_image']['detect'] / fast['ms_per_image']['detect']:.1f}x faster than "
          f"full-size detection (upsample 1); faces found: {fast['faces']} vs {full['faces']}")
    match_ms = measure_matching()
    print(f"matching one face against 100,000 enrolled faces: {match_ms:.1f} ms (median of 20)")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": results, "match_100k_ms": match_ms}, indent=2))


if __name__ == "__main__":
    main()
