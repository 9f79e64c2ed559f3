"""The use cases for images: enroll a face, forget it, recognize every face in a photo.

Each takes a Job (its S3 event, settings and the result fields being filled in) and either
returns, raises FaceError (a permanent failure: bad image, no face, invalid key), or raises
anything else (retried by the runner). `recognize` returns HANDED_OFF for a video: the video
function takes the job over (pipeline/video.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from shared import errors
from shared.aws import s3
from shared.aws.events import ObjectEvent
from shared.aws.gallery_table import GalleryFace, GalleryTable
from shared.clock import iso, timed
from shared.config import Config
from shared.engine.annotate import annotate
from shared.engine.decode import check_size, decode_image
from shared.engine.faces import enrollment_face, find_faces
from shared.engine.matching import identify
from shared.engine.video import SNIFF_BYTES, looks_like_video
from shared.pipeline import keys, results

ENROLL, FORGET, RECOGNIZE = "enroll", "forget", "recognize"
HANDED_OFF = "handed_off"  # what `recognize` returns for a video


@dataclass
class Job:
    """One run of a use case: its event, settings and the result document being filled in."""

    job_id: str
    kind: str
    event: ObjectEvent
    config: Config
    fields: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return self.event.bucket

    @property
    def key(self) -> str:
        return self.event.key


def _download(job: Job, stop_if_video: bool = False) -> bytes | None:
    """The source's bytes; one over the byte limit is refused before its bytes are read. With
    `stop_if_video`, None when its first bytes (or its name) say it is a video."""
    with timed(job.timings, "download"):
        try:
            with s3.open_object(job.bucket, job.key) as (info, body):
                job.fields["source_etag"] = info.etag
                head = body.read(SNIFF_BYTES)
                if stop_if_video and looks_like_video(job.key, head):
                    return None
                check_size(info.size, job.config.engine)  # before reading the rest
                return head + body.read()
        except s3.ObjectMissing as exc:
            raise errors.FaceError(errors.OBJECT_NOT_FOUND, str(exc)) from None


def _decode(job: Job, data: bytes) -> np.ndarray:
    with timed(job.timings, "decode"):
        image = decode_image(data, job.config.engine)
    job.fields["image"] = {"width": int(image.shape[1]), "height": int(image.shape[0])}
    return image


def enroll(job: Job) -> None:
    """`models/<person>/<file>` was uploaded: its one face joins the gallery under <person>."""
    person, _ = keys.parse_model_key(job.key)
    job.fields["person"] = person
    data = _download(job)
    assert data is not None
    etag = job.fields["source_etag"]
    image = _decode(job, data)
    cfg = job.config.engine
    with timed(job.timings, "detect_embed"):
        face = enrollment_face(find_faces(image, cfg, jitters=cfg.enroll_jitters), cfg)
    job.fields["faces"] = [results.face_entry(face.box, person=person)]
    gallery = GalleryTable(job.config.pipeline.gallery_table)
    with timed(job.timings, "store"):
        gallery.put_face(GalleryFace(person, job.key, face.embedding, etag, iso(time.time())))
        # The image may have been deleted or replaced while we worked; its own event handles the
        # new state, and this check makes sure a stale face does not outlive the image.
        now = s3.stat(job.bucket, job.key)
    if now is None:
        gallery.remove_face(person, job.key, etag=etag)
        raise errors.FaceError(errors.OBJECT_NOT_FOUND, f"s3://{job.bucket}/{job.key} was deleted during enrollment")
    if now.etag != etag:
        raise RuntimeError(f"s3://{job.bucket}/{job.key} changed during enrollment; retrying with the new content")


def forget(job: Job) -> None:
    """`models/<person>/<file>` was deleted: its face leaves the gallery."""
    person, _ = keys.parse_model_key(job.key)
    job.fields["person"] = person
    gallery = GalleryTable(job.config.pipeline.gallery_table)
    with timed(job.timings, "store"):
        removed = gallery.remove_face(person, job.key)
        # Events may arrive out of order: if the image is back (uploaded again after this delete)
        # and we just removed that very upload's face, put it back.
        now = s3.stat(job.bucket, job.key)
        if removed is not None and now is not None and now.etag == removed.etag:
            gallery.put_face(removed)
            removed = None
    job.fields["removed"] = removed is not None


def recognize(job: Job) -> str | None:
    """`queries/<path>` was uploaded: every face in it is matched against the whole gallery.
    Returns HANDED_OFF when it is a video (the runner passes it to the video function)."""
    if not keys.is_query_key(job.key):
        raise errors.FaceError(errors.INVALID_KEY, f"expected queries/<path>, got {job.key!r}")
    data = _download(job, stop_if_video=True)
    if data is None:
        if not job.config.pipeline.video_queue_url:
            raise errors.FaceError(errors.UNSUPPORTED_FORMAT, "videos are not enabled here (VIDEO_QUEUE_URL is not set)")
        return HANDED_OFF
    image = _decode(job, data)
    cfg = job.config.engine
    with timed(job.timings, "detect_embed"):
        faces = find_faces(image, cfg)
    with timed(job.timings, "load_gallery"):
        gallery = GalleryTable(job.config.pipeline.gallery_table).load_gallery()
    with timed(job.timings, "match"):
        embeddings = np.asarray([f.embedding for f in faces], dtype=np.float32).reshape(-1, 128)
        matches = identify(embeddings, gallery, cfg.threshold, cfg.top_k)
    job.fields["faces"] = [results.face_entry(f.box, m) for f, m in zip(faces, matches)]
    job.fields["people"] = sorted({m.person for m in matches if m.person})
    if job.config.pipeline.annotate:
        with timed(job.timings, "annotate"):
            jpeg = annotate(image, [f.box for f in faces], [m.person for m in matches])
        with timed(job.timings, "upload"):
            s3.put_object(job.bucket, keys.annotated_key(job.key), jpeg, "image/jpeg")
        job.fields["annotated"] = keys.annotated_key(job.key)
    return None


USE_CASES: dict[str, Callable[[Job], str | None]] = {ENROLL: enroll, FORGET: forget, RECOGNIZE: recognize}


def person_of(kind: str, key: str) -> str | None:
    """The person an enroll or forget job is about, when its key is valid."""
    try:
        return keys.parse_model_key(key)[0] if kind in (ENROLL, FORGET) else None
    except errors.FaceError:
        return None


def kind_for(handler_kind: str, event: ObjectEvent) -> str | None:
    """Which use case an event asks of a handler ("enroll" or "recognize"); None to ignore it."""
    if event.key.endswith("/"):
        return None  # a "folder" placeholder object
    if handler_kind == ENROLL:
        return ENROLL if event.created else FORGET if event.removed else None
    if handler_kind == RECOGNIZE:
        return RECOGNIZE if event.created else None
    raise ValueError(f"unknown handler kind {handler_kind!r}")
