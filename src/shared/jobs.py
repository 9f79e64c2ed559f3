"""The pipeline's use cases (enroll, forget, recognize) and the job runner around them.

`process_record` is what the handlers give aws-lambda-powertools' BatchProcessor: it parses the
S3 events in one SQS message and runs a job for each. Returning means "delete the message";
raising means "retry it" (the record is reported in `batchItemFailures`).

- Job ids derive from the event (bucket, key, ETag or version, sequencer or event time), so a
  redelivered message finds its job; a finished job is acknowledged without rework.
- FaceError (bad image, no face, invalid key...) is permanent: failed result + failed job, acked.
- Anything else is retried; on the last delivery (ApproximateReceiveCount >= MAX_RECEIVE_COUNT)
  the job is first marked failed (RETRIES_EXHAUSTED) and a failed result written, so the
  dead-letter copy and the job state agree.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import errors, results, video_jobs
from shared.annotate import annotate
from shared.aws import s3
from shared.aws.clients import error_code, is_transient
from shared.aws.events import BadEvent, ObjectEvent, parse_body
from shared.aws.gallery_table import GalleryFace, GalleryTable
from shared.aws.jobs_table import FAILED, RETRIES_EXHAUSTED, SUCCEEDED, JobBusy, JobDone, JobSpec, JobsTable, LeaseLost, iso
from shared.aws.video_state import VIDEO, VideoJobsTable
from shared.config import Config, load_config
from shared.engine import enrollment_face, find_faces, timed
from shared.imaging import check_size, decode_image
from shared.matching import identify
from shared.video import looks_like_video

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "lambdaface"  # the handlers' Logger is the parent
logger = Logger(service=SERVICE, child=True)

ENROLL, FORGET, RECOGNIZE = "enroll", "forget", "recognize"
OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"  # the source object was deleted before (or while) it was processed
MODELS_PREFIX, QUERIES_PREFIX = "models/", "queries/"
PERSON_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_LEASE_S = 900.0  # Lambda's longest timeout, used when there is no Lambda context
LEASE_MARGIN_S = 5.0


class JobInProgress(Exception):
    """Another attempt is running the job now; the message comes back after its visibility timeout."""


class HandedOff(Exception):
    """The job goes on in another function (a video: the video function); its result comes later."""


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


def job_id_for(event: ObjectEvent, kind: str) -> str:
    """A stable id for the job an event asks for (32 hex characters)."""
    return hashlib.sha256(f"{kind}\n{event.identity}".encode()).hexdigest()[:32]


def parse_model_key(key: str) -> tuple[str, str]:
    """(person, file name) of a `models/<person>/<file>` key, or FaceError INVALID_KEY / INVALID_PERSON."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != MODELS_PREFIX or not parts[2]:
        why = " (a person's name cannot contain '/')" if len(parts) > 3 and parts[0] + "/" == MODELS_PREFIX else ""
        raise errors.FaceError(errors.INVALID_KEY, f"expected models/<person>/<file>, got {_shorten(key)!r}{why}")
    person = parts[1]
    if not PERSON_PATTERN.fullmatch(person) or ".." in person:
        why = f" (it has {len(person)} characters)" if len(person) > 64 else ""
        raise errors.FaceError(
            errors.INVALID_PERSON,
            f"person {_shorten(person)!r} must be 1-64 letters, digits, '_', '-' or '.', without '..'{why}",
        )
    return person, parts[2]


def _shorten(text: str, most: int = 80) -> str:
    """`text` cut to `most` characters for a message (keys can be 1024 bytes long)."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _download(job: Job) -> s3.S3Object:
    """The source image; one over the byte limit is refused before its bytes are read."""
    with timed(job.timings, "download"):
        try:
            with s3.open_object(job.bucket, job.key) as (info, body):
                job.fields["source_etag"] = info.etag
                check_size(info.size, job.config.engine)
                return s3.S3Object(body.read(), info)
        except s3.ObjectMissing as exc:
            raise errors.FaceError(OBJECT_NOT_FOUND, str(exc)) from None


def _download_unless_video(job: Job) -> bytes | None:
    """The source's bytes, or None when its first bytes (or its name) say it is a video."""
    with timed(job.timings, "download"):
        try:
            with s3.open_object(job.bucket, job.key) as (info, body):
                job.fields["source_etag"] = info.etag
                head = body.read(video_jobs.SNIFF_BYTES)
                if looks_like_video(job.key, head):
                    return None
                check_size(info.size, job.config.engine)  # before reading the rest
                return head + body.read()
        except s3.ObjectMissing as exc:
            raise errors.FaceError(OBJECT_NOT_FOUND, str(exc)) from None


def _decode(job: Job, data: bytes) -> np.ndarray:
    with timed(job.timings, "decode"):
        image = decode_image(data, job.config.engine)
    job.fields["image"] = {"width": int(image.shape[1]), "height": int(image.shape[0])}
    return image


def enroll(job: Job) -> None:
    """`models/<person>/<file>` was uploaded: its one face joins the gallery under <person>."""
    person, _ = parse_model_key(job.key)
    job.fields["person"] = person
    source = _download(job)
    image = _decode(job, source.data)
    cfg = job.config.engine
    with timed(job.timings, "detect_embed"):
        face = enrollment_face(find_faces(image, cfg, jitters=cfg.enroll_jitters), cfg)
    job.fields["faces"] = [results.face_entry(face.box, person=person)]
    gallery = GalleryTable(job.config.pipeline.gallery_table)
    with timed(job.timings, "store"):
        gallery.put_face(GalleryFace(person, job.key, face.embedding, source.info.etag, iso(time.time())))
        # The image may have been deleted or replaced while we worked; its own event handles the
        # new state, and this check makes sure a stale face does not outlive the image.
        now = s3.stat(job.bucket, job.key)
    if now is None:
        gallery.remove_face(person, job.key, etag=source.info.etag)
        raise errors.FaceError(OBJECT_NOT_FOUND, f"s3://{job.bucket}/{job.key} was deleted during enrollment")
    if now.etag != source.info.etag:
        raise RuntimeError(f"s3://{job.bucket}/{job.key} changed during enrollment; retrying with the new content")


def forget(job: Job) -> None:
    """`models/<person>/<file>` was deleted: its face leaves the gallery."""
    person, _ = parse_model_key(job.key)
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


def recognize(job: Job) -> None:
    """`queries/<path>` was uploaded: every face in it is matched against the whole gallery."""
    if not job.key.startswith(QUERIES_PREFIX) or job.key.endswith("/"):
        raise errors.FaceError(errors.INVALID_KEY, f"expected queries/<path>, got {job.key!r}")
    data = _download_unless_video(job)
    if data is None:  # a video: the video function plans and recognises it (run_job hands it off)
        if not job.config.pipeline.video_queue_url:
            raise errors.FaceError(errors.UNSUPPORTED_FORMAT, "videos are not enabled here (VIDEO_QUEUE_URL is not set)")
        raise HandedOff(job.key)
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
    with timed(job.timings, "annotate"):
        jpeg = annotate(image, [f.box for f in faces], [m.person for m in matches])
    with timed(job.timings, "upload"):
        s3.put_object(job.bucket, results.annotated_key(job.key), jpeg, "image/jpeg")
    job.fields["annotated"] = results.annotated_key(job.key)


USE_CASES: dict[str, Callable[[Job], None]] = {ENROLL: enroll, FORGET: forget, RECOGNIZE: recognize}


def _person(kind: str, key: str) -> str | None:
    """The person an enroll or forget job is about, when its key is valid."""
    try:
        return parse_model_key(key)[0] if kind in (ENROLL, FORGET) else None
    except errors.FaceError:
        return None


def _kind_for(handler_kind: str, event: ObjectEvent) -> str | None:
    """Which use case an event asks of a handler ("enroll" or "recognize"); None to ignore it."""
    if event.key.endswith("/"):
        return None  # a "folder" placeholder object
    if handler_kind == ENROLL:
        return ENROLL if event.created else FORGET if event.removed else None
    if handler_kind == RECOGNIZE:
        return RECOGNIZE if event.created else None
    raise ValueError(f"unknown handler kind {handler_kind!r}")


def _result(job: Job, status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
    return results.document(
        {
            **job.fields,
            "job_id": job.job_id,
            "kind": job.kind,
            "source": job.key,
            "event_time": job.event.event_time or None,
            "status": status,
            "error": error,
            "model": results.model(job.config.engine.threshold),
            "timings_ms": results.timings(job.timings),
            "finished_at": iso(time.time()),
        }
    )


def _lease_s(lambda_context: Any) -> float:
    """How long this attempt may hold the job: until Lambda would have killed it, plus a margin."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return (remaining() / 1000.0 if remaining else DEFAULT_LEASE_S) + LEASE_MARGIN_S


def run_job(
    event: ObjectEvent, kind: str, receive_count: int = 1, lambda_context: Any = None, config: Config | None = None
) -> dict[str, Any] | None:
    """Run one job to its end; returns its result document (None when it was already done)."""
    config = config or load_config()
    job = Job(job_id_for(event, kind), kind, event, config)
    key = results.result_key(event.key)
    jobs = JobsTable(config.pipeline.jobs_table, config.pipeline.job_ttl_days)
    spec = JobSpec(job.job_id, kind, event.bucket, event.key, event.etag, event.version_id, _person(kind, event.key), key)
    attempt_id = f"{getattr(lambda_context, 'aws_request_id', 'local')}/{uuid.uuid4().hex[:8]}"
    log = {"job_id": job.job_id, "kind": kind, "bucket": event.bucket, "key": event.key}
    try:
        record = jobs.claim(spec, attempt_id, _lease_s(lambda_context))
    except JobDone as done:
        logger.info("job already finished; acknowledging", extra={**log, "status": done.record.get("status")})
        return None
    except JobBusy as busy:
        if busy.record.get("media") == VIDEO:
            logger.info("the video function has the job; acknowledging", extra=log)
            return None
        logger.warning("job is running in another attempt; retry later", extra=log)
        raise JobInProgress(str(busy)) from None
    started = time.time()
    logger.info("job started", extra={**log, "attempt": record.get("attempts")})
    try:
        if record.get("media") == VIDEO:  # delivered again after the hand-off
            _hand_off(job, jobs, attempt_id, {})
            logger.info("the video function has the job; acknowledging", extra=log)
            return None
        error = None
        try:
            with timed(job.timings, "total"):
                USE_CASES[kind](job)
        except HandedOff:
            _hand_off(job, jobs, attempt_id, {
                "video_started": round(started, 3), "event_time": event.event_time or None,
                "source_etag": job.fields.get("source_etag"),
            })
            logger.info("video handed off to the video function", extra={**log, "timings_ms": results.timings(job.timings)})
            return None
        except errors.FaceError as exc:  # permanent: record it, acknowledge the message
            error = exc.to_dict()
        document = _result(job, FAILED if error else SUCCEEDED, error)
        s3.put_json(event.bucket, key, document)
        _finish(jobs, job, attempt_id, document["status"], started, key, error)
    except Exception as exc:
        _retry_or_give_up(exc, job, jobs, attempt_id, started, receive_count, log)
        raise
    logger.info(f"job {document['status']}", extra={**log, "error": error, "timings_ms": document["timings_ms"]})
    return document


def _hand_off(job: Job, jobs: JobsTable, attempt_id: str, fields: dict[str, Any]) -> None:
    """The video function takes the job: first the record says so (the plan needs it), then the
    plan message goes, again if no plan was recorded yet (after a lost send; planning is idempotent)."""
    record = VideoJobsTable(jobs.name).hand_off(job.job_id, attempt_id, fields)
    if "segments_total" not in record:
        video_jobs.send_plan(job.config.pipeline.video_queue_url, record)


def _retry_or_give_up(
    exc: Exception, job: Job, jobs: JobsTable, attempt_id: str, started: float, receive_count: int, log: dict[str, Any]
) -> None:
    """After a failure worth retrying: release the job for the next delivery, or, on the last
    delivery, mark it failed and write the failed result (the message then goes to the DLQ)."""
    reason = {"code": error_code(exc) or type(exc).__name__, "message": str(exc)[:1000]}
    extra = {**log, "error": reason, "transient": is_transient(exc), "receive_count": receive_count}
    key = results.result_key(job.key)
    if receive_count < job.config.pipeline.max_receive_count:
        logger.warning("job attempt failed; it will be retried", extra=extra, exc_info=True)
        _best_effort(lambda: jobs.release(job.job_id, attempt_id, reason))
        return
    logger.exception("job failed on its last delivery", extra=extra)
    error = {"code": RETRIES_EXHAUSTED, "message": f"{receive_count} attempts failed; last: {reason['code']}: {reason['message']}"}
    _best_effort(lambda: s3.put_json(job.bucket, key, _result(job, FAILED, error)))
    _best_effort(lambda: jobs.finish(job.job_id, attempt_id, FAILED, started, key, error))


def _finish(jobs: JobsTable, job: Job, attempt_id: str, status: str, started: float, key: str, error: Any = None) -> None:
    try:
        jobs.finish(job.job_id, attempt_id, status, started, key, error)
    except LeaseLost:
        logger.warning("lease lost before the job was recorded; the newer attempt owns it", extra={"job_id": job.job_id})


def _best_effort(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:
        logger.exception("could not record the failure")


def process_record(record: SQSRecord, handler_kind: str, lambda_context: Any = None) -> list[dict[str, Any]]:
    """Run the jobs of every S3 event in one SQS message; raising makes the message come back."""
    try:
        events = parse_body(record.body)
    except BadEvent as exc:
        logger.error("dropping a message that is not an S3 event", extra={"message_id": record.message_id, "reason": str(exc)})
        return []
    receive_count = int((record.raw_event.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    documents = []
    for event in events:
        kind = _kind_for(handler_kind, event)
        if kind is None:
            logger.info("ignoring event", extra={"key": event.key, "event_name": event.event_name})
            continue
        document = run_job(event, kind, receive_count, lambda_context)
        if document is not None:
            documents.append(document)
    return documents
