"""Find faces in an RGB image and describe each with dlib's 128-D ResNet embedding.

Detection runs on a copy no larger than `detect_max_side` (upsampled once when that copy is
small, so that small faces are still found); boxes are mapped back to the original pixels, and
landmarks and embeddings are computed on the full-resolution image.
"""
from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

from shared import errors
from shared.clock import timed
from shared.config import EngineConfig
from shared.engine import models


@dataclass(frozen=True)
class Box:
    """A face's bounding box in original image pixels, clipped to the image."""

    left: int
    top: int
    width: int
    height: int

    def to_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class Face:
    """One detected face: where it is and its 128-D descriptor."""

    box: Box
    embedding: np.ndarray


def detection_plan(height: int, width: int, cfg: EngineConfig) -> tuple[float, int]:
    """The scale of the detection copy and how many times the detector upsamples it."""
    scale = min(1.0, cfg.detect_max_side / max(height, width))
    detected_side = max(height, width) * scale
    upsample = 1 if detected_side < cfg.upsample_below else 0
    return scale, upsample


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=2.0))


def _detect_rects(image: np.ndarray, cfg: EngineConfig) -> list[dlib.rectangle]:
    """Face rectangles in original pixels (not clipped: a face may extend past the frame)."""
    scale, upsample = detection_plan(image.shape[0], image.shape[1], cfg)
    small = image if scale == 1.0 else _resize(image, scale)
    if cfg.detector == "cnn":
        rects = [d.rect for d in models.cnn_detector()(small, upsample)]
    else:
        rects = list(models.hog_detector()(small, upsample))
    if scale == 1.0:
        return rects
    return [
        dlib.rectangle(
            round(r.left() / scale), round(r.top() / scale), round(r.right() / scale), round(r.bottom() / scale)
        )
        for r in rects
    ]


def _to_box(rect: dlib.rectangle, height: int, width: int) -> Box:
    left, top = max(0, rect.left()), max(0, rect.top())
    right, bottom = min(width, rect.right() + 1), min(height, rect.bottom() + 1)
    return Box(left, top, max(0, right - left), max(0, bottom - top))


def detect_faces(image: np.ndarray, cfg: EngineConfig | None = None) -> list[Box]:
    """Boxes of every face in `image` (HxWx3 uint8 RGB), in reading order."""
    cfg = cfg or EngineConfig()
    height, width = image.shape[:2]
    return [_to_box(r, height, width) for r in _sorted(_detect_rects(image, cfg))]


def _sorted(rects: list[dlib.rectangle]) -> list[dlib.rectangle]:
    return sorted(rects, key=lambda r: (r.left(), r.top()))


def embed_faces(
    image: np.ndarray, rects: list[dlib.rectangle], jitters: int = 1, timings: dict[str, float] | None = None
) -> np.ndarray:
    """128-D descriptors (n, 128) float32 for the faces at `rects`, aligned on 5 landmarks."""
    if not rects:
        return np.zeros((0, 128), dtype=np.float32)
    with timed(timings, "landmarks"):
        shapes = dlib.full_object_detections()
        predictor = models.shape_predictor()
        for rect in rects:
            shapes.append(predictor(image, rect))
    with timed(timings, "embed"):
        descriptors = models.face_encoder().compute_face_descriptor(image, shapes, max(0, jitters))
    return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32)


def find_faces(
    image: np.ndarray,
    cfg: EngineConfig | None = None,
    jitters: int | None = None,
    timings: dict[str, float] | None = None,
) -> list[Face]:
    """Detect and embed every face in `image`; fills `timings` (ms) per stage when given."""
    cfg = cfg or EngineConfig()
    height, width = image.shape[:2]
    with timed(timings, "detect"):
        rects = _sorted(_detect_rects(image, cfg))
    embeddings = embed_faces(image, rects, cfg.query_jitters if jitters is None else jitters, timings)
    return [Face(_to_box(r, height, width), e) for r, e in zip(rects, embeddings)]


def enrollment_face(faces: list[Face], cfg: EngineConfig | None = None) -> Face:
    """The single usable face of an enrollment photo, or a FaceError saying why there is none."""
    cfg = cfg or EngineConfig()
    if not faces:
        raise errors.FaceError(errors.NO_FACE, "no face was found in the image")
    if len(faces) > 1:
        raise errors.FaceError(
            errors.MULTIPLE_FACES, f"{len(faces)} faces were found; an enrollment photo must show exactly one"
        )
    face = faces[0]
    if min(face.box.width, face.box.height) < cfg.min_face:
        raise errors.FaceError(
            errors.FACE_TOO_SMALL,
            f"the face is {face.box.width}x{face.box.height} pixels; at least {cfg.min_face} are needed "
            "(use a closer or larger photo)",
        )
    return face


def face_distance(known: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Euclidean distances between one embedding and each row of `candidates`."""
    candidates = np.atleast_2d(candidates)
    if candidates.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(candidates - known, axis=1)

