"""Find faces in an RGB image and describe each with dlib's 128-D ResNet embedding.

Detection runs on a copy no larger than `detect_max_side` (upsampled once when that copy is
small, so that small faces are still found); boxes are mapped back to the original pixels, and
landmarks and embeddings are computed on the full-resolution image.

What runs where: dlib finds faces with HOG (or the MMOD CNN, `detector="cnn"`) and places the 5
landmarks that align each face into a 150x150 chip; the two networks (MMOD, and the ResNet that
maps a chip to its descriptor) run on ONNX Runtime (`backend="onnx"`), or on dlib itself
(`backend="dlib"`, the reference: the same numbers within 1e-4, 20-30x slower without BLAS).
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

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # the aligned face the descriptor network reads (dlib's own values)


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


def detect_rects(image: np.ndarray, cfg: EngineConfig) -> list[dlib.rectangle]:
    """Face rectangles in original pixels (not clipped: a face may extend past the frame)."""
    return _detect_rects_batch([image], cfg)[0]


def _detect_rects_batch(images: list[np.ndarray], cfg: EngineConfig) -> list[list[dlib.rectangle]]:
    """`detect_rects` of each image; frames of one size go through the CNN in one batch."""
    plans = [detection_plan(image.shape[0], image.shape[1], cfg) for image in images]
    smalls = [image if scale == 1.0 else _resize(image, scale) for image, (scale, _) in zip(images, plans)]
    if cfg.detector == "cnn" and cfg.backend == "onnx" and len({(p, s.shape) for p, s in zip(plans, smalls)}) == 1:
        found = models.mmod_detector(cfg.ort_threads).detect_batch(smalls, plans[0][1])
        rects = [[dlib.rectangle(*d[:4]) for d in dets] for dets in found]
    else:
        rects = [_run_detector(small, upsample, cfg) for small, (_, upsample) in zip(smalls, plans)]
    return [_scaled(r, scale) for r, (scale, _) in zip(rects, plans)]


def _scaled(rects: list[dlib.rectangle], scale: float) -> list[dlib.rectangle]:
    """Rectangles found on a copy scaled by `scale`, in the original's pixels."""
    if scale == 1.0:
        return rects
    return [dlib.rectangle(round(r.left() / scale), round(r.top() / scale), round(r.right() / scale),
                           round(r.bottom() / scale)) for r in rects]


def _run_detector(image: np.ndarray, upsample: int, cfg: EngineConfig) -> list[dlib.rectangle]:
    if cfg.detector == "hog":
        return list(models.hog_detector()(image, upsample))
    if cfg.backend == "dlib":
        return [d.rect for d in models.cnn_detector()(image, upsample)]
    return [dlib.rectangle(*d[:4]) for d in models.mmod_detector(cfg.ort_threads)(image, upsample)]


def _to_box(rect: dlib.rectangle, height: int, width: int) -> Box:
    left, top = max(0, rect.left()), max(0, rect.top())
    right, bottom = min(width, rect.right() + 1), min(height, rect.bottom() + 1)
    return Box(left, top, max(0, right - left), max(0, bottom - top))


def detect_faces(image: np.ndarray, cfg: EngineConfig | None = None) -> list[Box]:
    """Boxes of every face in `image` (HxWx3 uint8 RGB), in reading order."""
    cfg = cfg or EngineConfig()
    height, width = image.shape[:2]
    return [_to_box(r, height, width) for r in _sorted(detect_rects(image, cfg))]


def _sorted(rects: list[dlib.rectangle]) -> list[dlib.rectangle]:
    return sorted(rects, key=lambda r: (r.left(), r.top()))


def embed_faces(
    image: np.ndarray, rects: list[dlib.rectangle], jitters: int = 1, timings: dict[str, float] | None = None,
    cfg: EngineConfig | None = None,
) -> np.ndarray:
    """128-D descriptors (n, 128) float32 for the faces at `rects`, aligned on 5 landmarks.

    With `jitters` > 1 each face is the mean over that many randomly jittered copies of its chip
    (as dlib does it); all faces and jitters of an image go through the network in one batch."""
    cfg = cfg or EngineConfig()
    if not rects:
        return np.zeros((0, 128), dtype=np.float32)
    with timed(timings, "landmarks"):
        shapes = dlib.full_object_detections()
        predictor = models.shape_predictor()
        for rect in rects:
            shapes.append(predictor(image, rect))
    with timed(timings, "embed"):
        if cfg.backend == "dlib":
            descriptors = models.face_encoder().compute_face_descriptor(image, shapes, max(0, jitters))
            return np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32)
        return _onnx_descriptors(dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING), jitters, cfg)


def _onnx_descriptors(chips: list[np.ndarray], jitters: int, cfg: EngineConfig) -> np.ndarray:
    """The ResNet on ONNX Runtime over every chip (and its jittered copies) in one batch."""
    copies = max(1, jitters)
    batch = chips if copies == 1 else [j for chip in chips for j in dlib.jitter_image(chip, num_jitters=copies)]
    pixels = np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), dtype=np.float32)
    out = models.descriptor_session(cfg.ort_threads).run(None, {"input": pixels})[0]
    return out.reshape(len(chips), copies, 128).mean(axis=1).astype(np.float32)


def find_faces(
    image: np.ndarray,
    cfg: EngineConfig | None = None,
    jitters: int | None = None,
    timings: dict[str, float] | None = None,
) -> list[Face]:
    """Detect and embed every face in `image`; fills `timings` (ms) per stage when given."""
    return find_faces_batch([image], cfg, jitters, timings)[0]


def find_faces_batch(
    images: list[np.ndarray],
    cfg: EngineConfig | None = None,
    jitters: int | None = None,
    timings: dict[str, float] | None = None,
) -> list[list[Face]]:
    """`find_faces` of each image; video frames (one size) are detected in one batch by the CNN."""
    cfg = cfg or EngineConfig()
    with timed(timings, "detect"):
        rects_per_image = [_sorted(r) for r in _detect_rects_batch(images, cfg)]
    found = []
    for image, rects in zip(images, rects_per_image):
        height, width = image.shape[:2]
        embeddings = embed_faces(image, rects, cfg.query_jitters if jitters is None else jitters, timings, cfg)
        found.append([Face(_to_box(r, height, width), e) for r, e in zip(rects, embeddings)])
    return found


MIN_BOX_SIDE = 20  # pixels: a box given by hand (embed_at) smaller than this has too little face to align


def check_box(box: Box, height: int, width: int) -> None:
    """FaceError BAD_BOX unless `box` lies inside a `width` x `height` image and is at least MIN_BOX_SIDE a side."""
    if box.left < 0 or box.top < 0 or box.left + box.width > width or box.top + box.height > height:
        raise errors.FaceError(errors.BAD_BOX, f"the box {box.left},{box.top},{box.width},{box.height} is not inside "
                                               f"the {width}x{height} image")
    if min(box.width, box.height) < MIN_BOX_SIDE:
        raise errors.FaceError(errors.BAD_BOX, f"the box is {box.width}x{box.height} pixels; "
                                               f"at least {MIN_BOX_SIDE}x{MIN_BOX_SIDE} are needed")


def embed_at(image: np.ndarray, box: Box, cfg: EngineConfig | None = None, jitters: int | None = None,
             timings: dict[str, float] | None = None) -> Face:
    """The descriptor of a face given by its `box` instead of found by the detector (one it missed):
    the 5 landmarks are placed on that rectangle, then the aligned chip and the descriptor are
    computed as for a detected face (`embed_faces`), with the query jitters by default. A box as
    tight as the detector's (about the eyebrows to the chin) aligns best. FaceError BAD_BOX when the
    box is not inside the image or is too small (check_box)."""
    cfg = cfg or EngineConfig()
    height, width = image.shape[:2]
    check_box(box, height, width)
    rect = dlib.rectangle(box.left, box.top, box.left + box.width - 1, box.top + box.height - 1)
    embedding = embed_faces(image, [rect], cfg.query_jitters if jitters is None else jitters, timings, cfg)[0]
    return Face(box, embedding)


def enrollment_face(faces: list[Face], cfg: EngineConfig | None = None) -> Face:
    """The single usable face of an enrollment photo, or a FaceError saying why there is none."""
    cfg = cfg or EngineConfig()
    _check_enrollment_boxes([f.box for f in faces], cfg)
    return faces[0]


def find_enrollment_face(
    image: np.ndarray, cfg: EngineConfig | None = None, jitters: int | None = None,
    timings: dict[str, float] | None = None,
) -> Face:
    """The single usable face of an enrollment photo, embedded with `jitters` (the config's
    `enroll_jitters` by default). The faces are counted and measured before anything is embedded:
    a photo of many faces is refused (MULTIPLE_FACES) at the cost of one detection."""
    cfg = cfg or EngineConfig()
    height, width = image.shape[:2]
    with timed(timings, "detect"):
        rects = _sorted(detect_rects(image, cfg))
    _check_enrollment_boxes([_to_box(r, height, width) for r in rects], cfg)
    embedding = embed_faces(image, rects, cfg.enroll_jitters if jitters is None else jitters, timings, cfg)[0]
    return Face(_to_box(rects[0], height, width), embedding)


def _check_enrollment_boxes(boxes: list[Box], cfg: EngineConfig) -> None:
    """FaceError unless there is exactly one face, and it is large enough."""
    if not boxes:
        raise errors.FaceError(errors.NO_FACE, "no face was found in the image")
    if len(boxes) > 1:
        raise errors.FaceError(
            errors.MULTIPLE_FACES, f"{len(boxes)} faces were found; an enrollment photo must show exactly one"
        )
    box = boxes[0]
    if min(box.width, box.height) < cfg.min_face:
        raise errors.FaceError(
            errors.FACE_TOO_SMALL,
            f"the face is {box.width}x{box.height} pixels; at least {cfg.min_face} are needed "
            "(use a closer or larger photo)",
        )


def face_distance(known: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Euclidean distances between one embedding and each row of `candidates`."""
    candidates = np.atleast_2d(candidates)
    if candidates.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    return np.linalg.norm(candidates - known, axis=1)

