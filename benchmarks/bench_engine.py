"""Engine benchmark: ms per image for each stage, dlib's networks beside ONNX Runtime, and the MMOD CNN.

Rows (one process, models loaded beforehand, the configurations interleaved pass by pass so
that the machine's load falls on each alike):

* the chosen detection (EngineConfig's defaults) with `backend="onnx"` and `backend="dlib"`;
* full-size detection with one upsampling (face_recognition's default), with each backend;
* (here only) full size without upsampling.

Then the MMOD section: dlib's own CNN detector beside the ONNX Runtime one, on every still
photo resized to at most 640 px and on frames of the 9 s clip (upsample 0, as video frames
are detected): ms per image, speedup, and whether both found the same faces.

Usage: python benchmarks/bench_engine.py [--faces ../shared/faces] [--repeats 3] [--no-mmod] [--json OUT]
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
from typing import Any

import numpy as np

from shared.config import EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import find_faces
from shared.engine.matching import Gallery, identify

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("decode", "detect", "landmarks", "embed")
FULL_SIZE = {"detect_max_side": 100_000, "upsample_below": 100_000}  # detect at full size, upsample once
CLIP = "video/short_hamilton_clip.mp4"
MMOD_SIDE, MMOD_FRAMES = 640, 8


def photo_paths(faces_dir: Path) -> list[Path]:
    """Every still photo listed in labels.csv."""
    with open(faces_dir / "labels.csv", newline="") as handle:
        return [faces_dir / row["path"] for row in csv.DictReader(handle) if not row["path"].endswith(".mp4")]


def engine_settings(chosen: EngineConfig | None = None) -> dict[str, EngineConfig]:
    """The configurations `make bench` compares, by results.json key (`chosen` is production's)."""
    chosen = chosen or EngineConfig()
    return {
        "chosen": chosen.with_overrides(backend="onnx"),
        "chosen_dlib": chosen.with_overrides(backend="dlib"),
        "full_size_upsample_1": chosen.with_overrides(backend="onnx", **FULL_SIZE),
        "full_size_upsample_1_dlib": chosen.with_overrides(backend="dlib", **FULL_SIZE),
    }


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


def warm(paths: list[Path], cfg: EngineConfig) -> None:
    """Load the models `cfg` uses (not timed)."""
    find_faces(decode_image(paths[0].read_bytes(), cfg), cfg)


def summarise(runs: list[tuple[dict[str, float], int, float]], n: int) -> dict:
    """Median ms per image for each stage, images per second, faces found, ms per face."""
    per_image = {s: statistics.median(r[0][s] for r in runs) / n for s in STAGES}
    wall = statistics.median(r[2] for r in runs)
    faces = runs[0][1]
    return {"ms_per_image": per_image, "total_ms_per_image": wall * 1000 / n, "images_per_s": n / wall,
            "faces": faces, "ms_per_face": {s: per_image[s] * n / max(faces, 1) for s in STAGES}}


def measure(paths: list[Path], cfg: EngineConfig, repeats: int) -> dict:
    """Median ms per image for each stage, images per second, faces found."""
    warm(paths, cfg)
    return summarise([run_once(paths, cfg) for _ in range(repeats)], len(paths))


def measure_side_by_side(paths: list[Path], settings: dict[str, EngineConfig], repeats: int) -> dict[str, dict]:
    """`measure` of each configuration, their passes interleaved (a load spike hits all alike)."""
    for cfg in settings.values():
        warm(paths, cfg)
    runs: dict[str, list] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, cfg in settings.items():
            runs[name].append(run_once(paths, cfg))
    return {name: summarise(r, len(paths)) for name, r in runs.items()}


def descriptor_agreement(paths: list[Path], cfg: EngineConfig | None = None) -> dict:
    """How far the ONNX descriptors are from dlib's on the same faces (same boxes: HOG for both)."""
    cfg = cfg or EngineConfig()
    onnx, dlib_ = cfg.with_overrides(backend="onnx"), cfg.with_overrides(backend="dlib")
    worst_abs, worst_dist, faces, same_boxes = 0.0, 0.0, 0, 0
    for path in paths:
        image = decode_image(path.read_bytes(), cfg)
        a, b = find_faces(image, onnx), find_faces(image, dlib_)
        same_boxes += [f.box for f in a] == [f.box for f in b]
        for fa, fb in zip(a, b):
            faces += 1
            worst_abs = max(worst_abs, float(np.max(np.abs(fa.embedding - fb.embedding))))
            worst_dist = max(worst_dist, float(np.linalg.norm(fa.embedding - fb.embedding)))
    return {"faces": faces, "images_with_same_boxes": same_boxes, "images": len(paths),
            "max_abs_difference": worst_abs, "max_distance": worst_dist}


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


# --- MMOD: dlib's CNN detector beside the ONNX Runtime one -------------------------------------

def mmod_stills(paths: list[Path], faces_dir: Path, side: int = MMOD_SIDE) -> list[tuple[str, np.ndarray]]:
    """(name, RGB image at most `side` px) of every still photo."""
    from shared.engine.faces import _resize

    cfg = EngineConfig()
    stills = []
    for path in paths:
        image = decode_image(path.read_bytes(), cfg)
        scale = min(1.0, side / max(image.shape[:2]))
        stills.append((path.relative_to(faces_dir).as_posix(), image if scale == 1.0 else _resize(image, scale)))
    return stills


def mmod_frames(faces_dir: Path, count: int = MMOD_FRAMES) -> list[tuple[str, np.ndarray]]:
    """(name, RGB frame) of `count` frames spread evenly over the clip."""
    from shared.engine.video import probe_video, read_frames

    path = str(faces_dir / CLIP)
    info = probe_video(path)
    indices = sorted({int(i) for i in np.linspace(0, info.frames - 1, count + 2)[1:-1]})
    return [(f"frame {index}", frame) for index, frame in read_frames(path, indices)]


def _boxes_dlib(detections: Any) -> list[tuple[int, int, int, int]]:
    return sorted((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in detections)


def _boxes_onnx(detections: Any) -> list[tuple[int, int, int, int]]:
    return sorted(tuple(int(v) for v in d[:4]) for d in detections)


def _ms(action) -> tuple[float, Any]:
    start = time.perf_counter()
    value = action()
    return (time.perf_counter() - start) * 1000, value


def compare_mmod(items: list[tuple[str, np.ndarray]], repeats: int, threads: int = 1, upsample: int = 0,
                 batch: int = 0) -> dict:
    """dlib's CNN (one run per image: it is slow) and the ONNX one (median of `repeats`) on each
    image, one right after the other; with `batch` > 0 also the ONNX detector on `batch` images
    per call (as video frames go), median ms per image of `repeats` passes."""
    from shared.engine import models

    dlib_cnn, onnx = models.cnn_detector(), models.mmod_detector(threads)
    dlib_cnn(items[0][1], upsample), onnx(items[0][1], upsample)  # first calls allocate
    rows = []
    for name, image in items:
        dlib_ms, found_dlib = _ms(lambda: dlib_cnn(image, upsample))
        timed = [_ms(lambda: onnx(image, upsample)) for _ in range(repeats)]
        a, b = _boxes_dlib(found_dlib), _boxes_onnx(timed[0][1])
        rows.append({"image": name, "dlib_ms": dlib_ms, "onnx_ms": statistics.median(t for t, _ in timed),
                     "dlib_faces": len(a), "onnx_faces": len(b), "same_boxes": a == b})
    n = len(rows)
    dlib_total, onnx_total = sum(r["dlib_ms"] for r in rows), sum(r["onnx_ms"] for r in rows)
    result = {
        "images": n, "size": f"{items[0][1].shape[1]}x{items[0][1].shape[0]}" if len({i.shape for _, i in items}) == 1
        else f"at most {max(max(i.shape[:2]) for _, i in items)} px",
        "upsample": upsample, "threads": threads,
        "dlib_ms_per_image": dlib_total / n, "onnx_ms_per_image": onnx_total / n, "speedup": dlib_total / onnx_total,
        "dlib_faces": sum(r["dlib_faces"] for r in rows), "onnx_faces": sum(r["onnx_faces"] for r in rows),
        "images_with_same_counts": sum(r["dlib_faces"] == r["onnx_faces"] for r in rows),
        "images_with_same_boxes": sum(r["same_boxes"] for r in rows),
        "per_image": rows,
    }
    if batch:
        images = [image for _, image in items]
        passes = []
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, n, batch):
                onnx.detect_batch(images[i:i + batch], upsample)
            passes.append((time.perf_counter() - start) * 1000 / n)
        result["batch"] = batch
        result["onnx_batch_ms_per_image"] = statistics.median(passes)
        result["batch_speedup"] = result["dlib_ms_per_image"] / result["onnx_batch_ms_per_image"]
    return result


def measure_mmod(faces_dir: Path, repeats: int = 3, side: int = MMOD_SIDE, frames: int = MMOD_FRAMES,
                 threads: int | None = None) -> dict:
    """The MMOD comparison on the still photos at `side` px and on `frames` frames of the clip."""
    from shared.config import load_config
    from shared.engine.video import FRAME_BATCH

    threads = threads or load_config().engine.ort_threads
    paths = photo_paths(faces_dir)
    return {
        "side": side,
        "stills": compare_mmod(mmod_stills(paths, faces_dir, side), repeats, threads),
        "frames": compare_mmod(mmod_frames(faces_dir, frames), repeats, threads, batch=FRAME_BATCH),
    }


# --- command line --------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_faces = os.environ.get("LAMBDAFACE_FACES") or str(ROOT.parent / "shared" / "faces")
    parser.add_argument("--faces", default=default_faces, help="folder with labels.csv (default: ../shared/faces)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mmod", action="store_true", help="skip dlib's CNN beside the ONNX one (about 1.5 min)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    faces_dir = Path(args.faces)
    paths = photo_paths(faces_dir)
    chosen = EngineConfig()
    settings = engine_settings(chosen)
    settings["full_size_upsample_0"] = chosen.with_overrides(detect_max_side=100_000, upsample_below=0)
    labels = {
        "chosen": f"onnx, max side {chosen.detect_max_side}, upsample below {chosen.upsample_below} (chosen)",
        "chosen_dlib": f"dlib, max side {chosen.detect_max_side}, upsample below {chosen.upsample_below}",
        "full_size_upsample_1": "onnx, full size, upsample 1 (face_recognition's)",
        "full_size_upsample_1_dlib": "dlib, full size, upsample 1 (face_recognition's)",
        "full_size_upsample_0": "onnx, full size, upsample 0",
    }
    print(f"{len(paths)} photos from {args.faces}; medians of {args.repeats} interleaved runs; {os.cpu_count()} cores")
    header = f"{'backend, detection':52s} " + " ".join(f"{s:>9s}" for s in STAGES) + f" {'total':>8s} {'img/s':>6s} faces"
    print(header + "\n" + "-" * len(header), flush=True)
    results = measure_side_by_side(paths, settings, args.repeats)
    for name, r in results.items():
        stages = " ".join(f"{r['ms_per_image'][s]:9.1f}" for s in STAGES)
        print(f"{labels[name]:52s} {stages} {r['total_ms_per_image']:8.1f} {r['images_per_s']:6.2f} {r['faces']:5d}")
    onnx, dlib_, full = results["chosen"], results["chosen_dlib"], results["full_size_upsample_1_dlib"]
    print(f"\nembed per face: dlib {dlib_['ms_per_face']['embed']:.1f} ms, onnx {onnx['ms_per_face']['embed']:.1f} ms "
          f"({dlib_['ms_per_face']['embed'] / onnx['ms_per_face']['embed']:.1f}x)")
    print(f"chosen (onnx) is {onnx['images_per_s'] / full['images_per_s']:.1f}x the images/s of full size upsample 1 "
          f"with dlib (face_recognition's pipeline); faces found: {onnx['faces']} vs {full['faces']}")
    agreement = descriptor_agreement(paths, chosen)
    print(f"descriptors onnx vs dlib over {agreement['faces']} faces: max |difference| "
          f"{agreement['max_abs_difference']:.2e}, max distance {agreement['max_distance']:.2e}")
    match_ms = measure_matching()
    print(f"matching one face against 100,000 enrolled faces: {match_ms:.1f} ms (median of 20)", flush=True)
    out: dict[str, Any] = {"settings": results, "descriptor_agreement": agreement, "match_100k_ms": match_ms}
    if not args.no_mmod:
        mmod = out["mmod"] = measure_mmod(faces_dir, args.repeats)
        for what, m in (("stills", mmod["stills"]), ("frames", mmod["frames"])):
            line = (f"MMOD on {m['images']} {what} ({m['size']}, upsample {m['upsample']}): dlib {m['dlib_ms_per_image']:.0f} ms, "
                    f"onnx {m['onnx_ms_per_image']:.0f} ms per image ({m['speedup']:.1f}x)")
            if "batch" in m:
                line += f"; onnx in batches of {m['batch']}: {m['onnx_batch_ms_per_image']:.0f} ms ({m['batch_speedup']:.1f}x)"
            print(f"{line}; faces {m['dlib_faces']} vs {m['onnx_faces']}, same boxes on "
                  f"{m['images_with_same_boxes']}/{m['images']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
