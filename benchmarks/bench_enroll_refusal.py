"""What enroll spends on a group photo it refuses (MULTIPLE_FACES): a contact sheet of 30 faces
(6x5 tiles cropped from the sample photos), timed the way enroll worked before issue 20 (every face
embedded with the enrollment's jitters, then counted) and the way it works now (counted first).

    python benchmarks/bench_enroll_refusal.py --faces ../shared/faces
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from shared import errors
from shared.config import EngineConfig
from shared.engine.faces import detect_faces, enrollment_face, find_enrollment_face, find_faces

TILE, COLUMNS, ROWS = 240, 6, 5


def contact_sheet(faces_dir: Path, cfg: EngineConfig) -> np.ndarray:
    """COLUMNS x ROWS tiles, each a face (with a margin) from one of the sample photos of one face."""
    tiles = []
    for path in sorted((faces_dir / "people").glob("*/*")):
        image = Image.open(path).convert("RGB")
        boxes = detect_faces(np.asarray(image), cfg)
        if len(boxes) == 1:
            b = boxes[0]
            cx, cy, side = b.left + b.width / 2, b.top + b.height / 2, max(b.width, b.height) * 1.8
            crop = image.crop((round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)))
            tiles.append(crop.resize((TILE, TILE)))
    sheet = Image.new("RGB", (TILE * COLUMNS, TILE * ROWS))
    for i in range(COLUMNS * ROWS):
        sheet.paste(tiles[i % len(tiles)], ((i % COLUMNS) * TILE, (i // COLUMNS) * TILE))
    return np.asarray(sheet)


def best_ms(run, repeats: int) -> tuple[float, str]:
    times, code = [], ""
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            run()
        except errors.FaceError as exc:
            code = exc.code
        times.append((time.perf_counter() - started) * 1000)
    return min(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = EngineConfig()
    sheet = contact_sheet(args.faces, cfg)
    print(f"contact sheet {sheet.shape[1]}x{sheet.shape[0]}: {len(detect_faces(sheet, cfg))} faces found; "
          f"enroll_jitters={cfg.enroll_jitters}, backend={cfg.backend}, detector={cfg.detector}")
    before, code = best_ms(lambda: enrollment_face(find_faces(sheet, cfg, jitters=cfg.enroll_jitters), cfg), args.repeats)
    print(f"embed every face, then count: {code} after {before:.0f} ms (best of {args.repeats})")
    after, code = best_ms(lambda: find_enrollment_face(sheet, cfg), args.repeats)
    print(f"count first (enroll now):     {code} after {after:.0f} ms (best of {args.repeats})")


if __name__ == "__main__":
    main()
