"""The use cases for images: enroll a face, forget it, recognize every face in a photo.

Each takes a Job (its S3 event, settings and the result fields being filled in) and either
returns, raises FaceError (a permanent failure: bad image, no face, invalid key), or raises
anything else (retried by the runner). `recognize` returns HANDED_OFF for a video: the video
function takes the job over (pipeline/video.py).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from shared import errors
from shared.aws import s3
from shared.aws.events import ObjectEvent
from shared.aws import gallery_cache, gallery_purge
from shared.aws.gallery_table import Change, GalleryTable, Outcome
from shared.clock import iso, timed
from shared.config import Config
from shared.engine.decode import check_size, decode_image
from shared.engine.faces import Face, find_enrollment_face, find_faces
from shared.engine.matching import Gallery, Match, identify, needs_review, one_face_per_person, verify
from shared.engine.video import SNIFF_BYTES, looks_like_video
from shared.pipeline import added_records, annotated, corrections, keys, people_index, results, unknowns

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
    corrections_seen: set[str] | None = None  # the ids of the correction records applied (None: none kept here)

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
    """`models/<person>/<file>` was uploaded: its one face joins the gallery under <person>.

    The change is ordered by the S3 event: if the image was deleted or replaced meanwhile, that
    newer event wins however the two interleave, so no clean-up step is needed (or can fail)."""
    person, _ = keys.parse_model_key(job.key)
    job.fields["person"] = person
    data = _download(job)  # OBJECT_NOT_FOUND when deleted since: its delete event forgets it
    assert data is not None
    etag = job.fields["source_etag"]
    cfg = job.config.engine
    try:
        image = _decode(job, data)
        with timed(job.timings, "detect_embed"):
            face = find_enrollment_face(image, cfg)  # the faces are counted before any is embedded
    except errors.FaceError:
        _drop_replaced_face(job, person, etag)  # the image there now has no usable face
        raise
    job.fields["faces"] = [results.face_entry(face.box, person=person)]
    with timed(job.timings, "store"):
        _change(job, person, etag, face.embedding)


def forget(job: Job) -> None:
    """`models/<person>/<file>` was deleted: its face leaves the gallery (a tombstone ordered by the
    event, so a late upload event cannot bring it back)."""
    person, _ = keys.parse_model_key(job.key)
    job.fields["person"] = person
    table = _gallery(job)
    with timed(job.timings, "store"):
        now = s3.stat(job.bucket, job.key)
        current = table.get(table.order, job.key)
        if now is not None and current and not current.get("deleted") and current.get("etag") == now.etag:
            # A stale delete (the image was uploaded again since): the face of the image there
            # now stays; nothing is written, so nothing can be put back out of order.
            job.fields["removed"] = False
            return
        job.fields["removed"] = _change(job, person, "", None).removed
        people_index.after_forget(job.config.pipeline, table, person)  # their last face: their index entries go
        if job.config.pipeline.corrections_table and not table.has_faces(person):
            into = people_index.merging_into(job.config.pipeline, person)  # `lambdaface merge` under way
            if into:
                corrections.move_person(job.config, person, into)  # ... the corrections naming them go with them
            else:
                corrections.forget_person(job.config, person)  # ... and the corrections naming them


def _gallery(job: Job) -> GalleryTable:
    return GalleryTable(job.config.pipeline.gallery_table, job.config.pipeline.gallery_shards)


def _change(job: Job, person: str, etag: str, embedding: np.ndarray | None) -> Outcome:
    """Apply this job's event to the gallery, remove the replaced face's embedding from the log,
    compact when due, and have a purge remove a face the snapshot holds (every step idempotent:
    a redelivered message repeats the ones not done)."""
    table = _gallery(job)
    change = Change(person, job.key, job.event.sequencer, job.event.event_time, etag, embedding, iso(time.time()))
    outcome = table.apply(change)
    if outcome.tie and _is_there(job, etag):  # an upload in the same millisecond as a delete: S3 says which was last
        outcome = table.apply(dataclasses.replace(change, wins_ties=True))
    if outcome.stale:
        return outcome
    pipeline = job.config.pipeline
    try:
        if gallery_cache.after_changes(table, job.bucket, [outcome], pipeline.gallery_compact_every,
                                       purge_now=not pipeline.enroll_queue_url):
            # The published snapshot still holds the removed face: one delayed purge covers a burst.
            gallery_purge.request(table, job.bucket, pipeline.enroll_queue_url, outcome.seq, pipeline.gallery_purge_delay_s)
    finally:
        gallery_cache.drop(table)  # an enroll worker keeps no gallery between jobs
    return outcome


def _is_there(job: Job, etag: str) -> bool:
    now = s3.stat(job.bucket, job.key)
    return now is not None and now.etag == etag


def _drop_replaced_face(job: Job, person: str, etag: str) -> None:
    """An upload without a usable face replaced an enrolled image: the old face goes."""
    table = _gallery(job)
    current = table.get(table.order, job.key)
    if current and not current.get("deleted") and current.get("etag") != etag:
        _change(job, person, etag, None)


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
    faces, _, gallery = recognize_faces(image, job.config, job.fields, job.timings)
    entries = job.fields["faces"]
    etag = job.fields["source_etag"]
    with timed(job.timings, "corrections"):  # one Query: the decisions a person made about these bytes' faces
        records = corrections.for_etag(job.config, etag)
    if job.config.pipeline.corrections_table:
        job.corrections_seen = corrections.ids(records)
    with timed(job.timings, "added_faces"):  # faces added by hand to these bytes (`added` records), embedded at their boxes
        entries += added_records.entries(job.config, records, image, entries, gallery)
    applied = corrections.apply_photo(job.config, records, entries)  # added faces too: they are matched by box
    kept = [i for i, entry in enumerate(applied) if entry is not None]
    job.fields["faces"] = [applied[i] for i in kept]
    job.fields["people"] = sorted({e["person"] for e in job.fields["faces"] if e.get("person")})
    kept_out = corrections.excluded_clusters(records, [e["box"] for e in job.fields["faces"]])
    if job.config.pipeline.remember_unknowns:  # the detector's faces only: an added face joins no cluster
        found = [n for n, i in enumerate(kept) if i < len(faces)]
        with timed(job.timings, "remember"):
            unknowns.remember_photo(job.config, job.bucket, job.key, etag, job.event, [faces[kept[n]] for n in found],
                                    [job.fields["faces"][n] for n in found], numbers=[kept[n] for n in found],
                                    excluded=[kept_out[n] for n in found])
    if job.fields["faces"] != entries:  # corrected: the engine's own answer is kept beside it (undo restores it)
        for i, entry, out in zip(kept, job.fields["faces"], kept_out):
            if entry.get("cluster") and entries[i].get("person") is None:  # a face kept out of a cluster was in it
                entries[i]["cluster"] = min(out) if out else entry["cluster"]
        job.fields["engine_faces"] = entries
    if job.config.pipeline.annotate:
        with timed(job.timings, "annotate"):
            jpeg = annotated.render(image, job.fields["faces"])
        with timed(job.timings, "upload"):
            job.fields["annotated"] = annotated.store(job.bucket, job.key, jpeg)
    return None


def recognize_faces(image: np.ndarray, config: Config, fields: dict[str, Any], timings: dict[str, float],
                    person: str | None = None) -> tuple[list[Face], list[Match], Gallery]:
    """Every face of a decoded photo matched against the current gallery (the worker's warm copy,
    brought up to date: Freshness immediate), or with `person` against that person's faces only;
    fills `fields` (faces, with the review mark, and people); (faces, matches, the gallery). Reads
    only: the S3 job and the synchronous API share it."""
    cfg = config.engine
    with timed(timings, "detect_embed"):
        faces = find_faces(image, cfg)
    with timed(timings, "load_gallery"):
        gallery = gallery_cache.load(GalleryTable(config.pipeline.gallery_table))
    with timed(timings, "match"):
        embeddings = np.asarray([f.embedding for f in faces], dtype=np.float32).reshape(-1, 128)
        if person is not None:
            matches = verify(embeddings, gallery, person, cfg.threshold)
        else:
            matches = identify(embeddings, gallery, cfg.threshold, cfg.top_k)
        if cfg.one_face_per_person:
            matches = one_face_per_person(matches, cfg.threshold)
    fields["faces"] = [results.face_entry(f.box, m, review=needs_review(m.distance, cfg.threshold, cfg.review_band))
                       for f, m in zip(faces, matches)]
    fields["people"] = sorted({m.person for m in matches if m.person})
    return faces, matches, gallery


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
        if event.key.startswith(keys.API_PREFIX):
            return None  # stored by the synchronous API, which ran its job in the call
        return RECOGNIZE if event.created else None
    raise ValueError(f"unknown handler kind {handler_kind!r}")
