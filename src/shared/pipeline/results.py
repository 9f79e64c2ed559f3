"""Result documents (`results/<source key>.json`, see keys.py), read by outside tools, so the field names are fixed.

    job_id, kind, source, source_etag, event_time, status, person, image {width, height},
    faces [{box {left, top, width, height}, person, distance, candidates [{person, distance}], nearest_taken, cluster,
            review, added, named}],
    people, annotated, removed, error {code, message}, model {name, threshold}, timings_ms, finished_at

A video under queries/ (media "video") has, instead of image/faces/annotated: duration_s, fps,
frames_sampled, segments, appearances [{person, intervals [[start_s, end_s]]}] and
frames [{t, faces [{box, person, distance, cluster, review}]}] (see shared/pipeline/video.py).

`nearest_taken` (true, else left out): the face's nearest person named a nearer face of the same
photo or frame (one face per person, LAMBDAFACE_ONE_FACE_PER_PERSON), so this one has its next
candidate within the threshold or none; `distance` is then that candidate's, or still the nearest's.

`review` (true, else left out): the face's `distance` lies within LAMBDAFACE_REVIEW_BAND of the
threshold (`model.threshold`), ends included: named or not, the decision was close, and
`lambdaface review` lists it (photos and video frames) for a person to confirm or correct.

`added` (true, else left out): the face was not found by the detector but added by its box with
`lambdaface add-face` (shared/pipeline/added_faces.py); kept as a correction record of the
source's bytes, it is in the result of every recognition of the same bytes, at any key. `named` (true, else left out): an added face whose `person` was given (`--is`),
not matched; its `distance` is then to that person's nearest enrolled face, or null.

`cluster` (an unknown face, when remembering unknown faces is on) is the id (`u-...`) of the group
of look-alike unknown faces it joined; an appearance of one has `person` null and its `cluster`.

`corrected` (a face a correction record changed): its decisions, e.g. ["not obama"]; the result
then keeps the engine's own answer in `engine_faces` (a photo) or `engine_frames` (a video's
changed frames). See shared/pipeline/corrections.py.

`kind` is "enroll", "recognize" or "forget" (an image under models/ was deleted: `person`,
`removed`). `source_etag` is the ETag of the bytes processed; `event_time` the S3 event's time.
A field that does not apply to a job is left out (no `people` on an enrollment, no `error` on a
success). Embeddings never appear in results.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from shared.clock import iso

if TYPE_CHECKING:  # type hints only: documents are built without loading the engine
    from shared.engine.faces import Box
    from shared.engine.matching import Match

MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
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
    "header_frames",  # a video whose header claimed more frames than it holds: the claim
    "frames_sampled",
    "sample_fps",  # a video: frames analysed per second (the appearances' intervals are built on it)
    "segments",
    "faces",
    "engine_faces",  # a corrected photo: the engine's own faces (shared/pipeline/corrections.py)
    "people",
    "appearances",
    "frames",
    "engine_frames",  # a corrected video: the engine's own version of the frames corrections changed
    "annotated",
    "removed",
    "error",
    "model",
    "timings_ms",
    "finished_at",
)


def face_entry(box: Box, match: Match | None = None, person: str | None = None, review: bool = False) -> dict[str, Any]:
    """One `faces` element: where the face is, who it is (None if unknown) and the nearest people;
    `review`: its distance sits in the review band (see `needs_review` in shared/engine/matching.py)."""
    if match is None:
        return {"box": box.to_dict(), "person": person, "distance": None, "candidates": []}
    entry = {
        "box": box.to_dict(),
        "person": match.person,
        "distance": None if match.distance is None else round(match.distance, 4),
        "candidates": [c.to_dict() for c in match.candidates],
    }
    if match.nearest_taken:
        entry["nearest_taken"] = True  # its nearest person named a nearer face of the same image
    if review:
        entry["review"] = True  # its distance is within the review band around the threshold
    return entry


def document(fields: dict[str, Any]) -> dict[str, Any]:
    """The result document: the known fields, in the documented order, None values left out."""
    return {name: fields[name] for name in FIELDS if fields.get(name) is not None}


def model(threshold: float) -> dict[str, Any]:
    """The `model` object."""
    return {"name": MODEL_NAME, "threshold": threshold}


def timings(stages: dict[str, float]) -> dict[str, float]:
    """`timings_ms`, rounded to 0.1 ms."""
    return {stage: round(ms, 1) for stage, ms in stages.items()}


def job_document(
    fields: dict[str, Any], *, job_id: str, kind: str, source: str, event_time: str | None, status: str,
    error: dict[str, str] | None, threshold: float, timings_ms: dict[str, float],
) -> dict[str, Any]:
    """A finished job's result document: its use case's `fields` plus what every job reports."""
    return document({
        **fields, "job_id": job_id, "kind": kind, "source": source, "event_time": event_time or None,
        "status": status, "error": error, "model": model(threshold), "timings_ms": timings(timings_ms),
        "finished_at": iso(time.time()),
    })
