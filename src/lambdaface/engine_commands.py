"""`lambdaface detect` and `lambdaface compare`: the face engine on local files, JSON lines out."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.engine.faces import Face

from shared import errors
from shared.config import EngineConfig, load_config
from shared.errors import FaceError

# dlib, numpy and Pillow load inside the commands, so `lambdaface --help` and the client
# commands start fast.


def engine_options() -> argparse.ArgumentParser:
    """Options shared by the engine commands (defaults come from LAMBDAFACE_* variables)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("engine")
    group.add_argument("--detector", choices=("hog", "cnn"), help="face detector (default: hog)")
    group.add_argument("--threshold", type=float, help="largest distance that is a match (default: 0.6)")
    group.add_argument("--jitters", type=int, help="re-samplings averaged per embedding (default: 1)")
    group.add_argument("--max-side", type=int, dest="detect_max_side", help="detect on a copy this large at most")
    return parent


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The environment's engine settings with the command line's overrides."""
    return load_config().engine.with_overrides(
        detector=args.detector, threshold=args.threshold, detect_max_side=args.detect_max_side,
        query_jitters=args.jitters,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `detect` and `compare` subcommands."""
    detect = subparsers.add_parser(
        "detect", parents=[engine_options()], help="find the faces in images",
        description="Print one JSON line per image with the box of every face found.",
    )
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    detect.set_defaults(func=run_detect)

    compare = subparsers.add_parser(
        "compare", parents=[engine_options()], help="compare a known face with the faces in other images",
        description="KNOWN must show exactly one face. Prints one JSON line per UNKNOWN image with the "
        "smallest distance to KNOWN's face and whether it is a match.",
    )
    compare.add_argument("known", metavar="KNOWN")
    compare.add_argument("unknown", nargs="+", metavar="UNKNOWN")
    from lambdaface import sync_client, watch

    sync_client.add_sync_args(compare, threshold=False)  # --sync A B: the synchronous API instead of this machine's engine
    watch.add_connection_args(compare)
    compare.add_argument("--json", action="store_true", help="with --sync: print the response document")
    compare.set_defaults(func=run_compare)


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _load(path: str, cfg: EngineConfig):
    from shared.engine.decode import decode_image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FaceError(errors.UNREADABLE_FILE, f"cannot read {path}: {exc.strerror}") from None
    return decode_image(data, cfg)


def run_detect(args: argparse.Namespace) -> int:
    """Detect faces in each image; exit 1 if any image failed."""
    from shared.engine.faces import detect_faces

    cfg = engine_config(args)
    failed = 0
    for path in args.images:
        try:
            image = _load(path, cfg)
            boxes = detect_faces(image, cfg)
        except FaceError as exc:
            failed += 1
            _emit({"image": path, "error": exc.to_dict()})
            continue
        height, width = image.shape[:2]
        _emit({"image": path, "width": width, "height": height, "faces": [{"box": b.to_dict()} for b in boxes]})
    return 1 if failed else 0


def _known_face(path: str, cfg: EngineConfig) -> "Face":
    from shared.engine.faces import find_enrollment_face

    return find_enrollment_face(_load(path, cfg), cfg, jitters=cfg.query_jitters)  # counted before embedding


def run_compare(args: argparse.Namespace) -> int:
    if args.sync:
        from lambdaface import sync_client

        return sync_client.compare(args)
    """Compare KNOWN's single face with every face of each UNKNOWN image."""
    from shared.engine.faces import face_distance, find_faces

    cfg = engine_config(args)
    try:
        known = _known_face(args.known, cfg)
    except FaceError as exc:
        _emit({"image": args.known, "error": exc.to_dict()})
        return 1
    failed = 0
    for path in args.unknown:
        try:
            faces = find_faces(_load(path, cfg), cfg)
        except FaceError as exc:
            failed += 1
            _emit({"image": path, "error": exc.to_dict()})
            continue
        distances = face_distance(known.embedding, [f.embedding for f in faces]) if faces else []
        best = float(min(distances)) if len(distances) else None
        _emit({
            "image": path,
            "faces": len(faces),
            "distance": None if best is None else round(best, 4),
            "match": best is not None and best <= cfg.threshold,
        })
    return 1 if failed else 0
