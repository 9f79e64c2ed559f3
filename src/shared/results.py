"""Result documents: `results/<source key>.json`, read by outside tools, so the field names are fixed.

    job_id, kind, source, source_etag, event_time, status, person, image {width, height},
    faces [{box {left, top, width, height}, person, distance, candidates [{person, distance}]}],
    people, annotated, removed, error {code, message}, model {name, threshold}, timings_ms, finished_at

A video under queries/ (media "video") has, instead of image/faces/annotated: duration_s, fps,
frames_sampled, segments, appearances [{person, intervals [[start_s, end_s]]}] and
frames [{t, faces [{box, person, distance}]}] (see shared/video_jobs.py).

`kind` is "enroll", "recognize" or "forget" (an image under models/ was deleted: `person`,
`removed`). `source_etag` is the ETag of the bytes processed; `event_time` the S3 event's time.
A field that does not apply to a job is left out (no `people` on an enrollment, no `error` on a
success). Embeddings never appear in results.
"""
from __future__ import annotations

from typing import Any

from shared.engine import Box
from shared.matching import Match

MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
RESULTS_PREFIX = "results/"
FIELDS = (
    "job_id",
    "kind",
    "source",
    "source_etag",
    "event_time",
    "status",
    "person",
    "image",
    "media",  # "video" for a video (images leave it out); then duration_s ... segments, appearances, frames
    "duration_s",
    "fps",
    "frames_sampled",
    "segments",
    "faces",
    "people",
    "appearances",
    "frames",
    "annotated",
    "removed",
    "error",
    "model",
    "timings_ms",
    "finished_at",
)


def result_key(source_key: str) -> str:
    """`results/<source key>.json`."""
    return f"{RESULTS_PREFIX}{source_key}.json"


def annotated_key(source_key: str) -> str:
    """`results/<source key>.jpg`, the annotated copy written next to the result."""
    return f"{RESULTS_PREFIX}{source_key}.jpg"


def face_entry(box: Box, match: Match | None = None, person: str | None = None) -> dict[str, Any]:
    """One `faces` element: where the face is, who it is (None if unknown) and the nearest people."""
    if match is None:
        return {"box": box.to_dict(), "person": person, "distance": None, "candidates": []}
    return {
        "box": box.to_dict(),
        "person": match.person,
        "distance": None if match.distance is None else round(match.distance, 4),
        "candidates": [c.to_dict() for c in match.candidates],
    }


def document(fields: dict[str, Any]) -> dict[str, Any]:
    """The result document: the known fields, in the documented order, None values left out."""
    return {name: fields[name] for name in FIELDS if fields.get(name) is not None}


def model(threshold: float) -> dict[str, Any]:
    """The `model` object."""
    return {"name": MODEL_NAME, "threshold": threshold}


def timings(stages: dict[str, float]) -> dict[str, float]:
    """`timings_ms`, rounded to 0.1 ms."""
    return {stage: round(ms, 1) for stage, ms in stages.items()}
