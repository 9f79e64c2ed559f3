"""The job runner for S3 events: what the enroll and recognize handlers give Powertools' BatchProcessor.

`process_record` parses the S3 events in one SQS message and runs a job for each. Returning means
"delete the message"; raising means "retry it" (the record is reported in `batchItemFailures`).

- Job ids derive from the event (bucket, key, ETag or version, sequencer or event time), so a
  redelivered message finds its job; a finished job is acknowledged without rework.
- FaceError (bad image, no face, invalid key...) is permanent: failed result + failed job, acked.
- An over-long key (keys.MAX_KEY_BYTES) is INVALID_KEY before anything runs; an AWS error that no
  retry can change (delivery.is_permanent) finishes the job as REQUEST_REFUSED, acked.
- Anything else is retried, following the delivery rules in delivery.py.
- A video under queries/ is handed off: the job record says `media: video`, then the plan
  message goes to the video function (pipeline/video.py), which finishes the job.
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import errors
from shared.aws import s3
from shared.aws.events import BadEvent, ObjectEvent, parse_body
from shared.aws.jobs_table import FAILED, SUCCEEDED, JobBusy, JobDone, JobSpec, JobsTable, LeaseLost
from shared.aws.video_jobs_table import VIDEO, VideoJobsTable
from shared.clock import timed
from shared.config import SNAPSTART_ENV, Config, current_config
from shared.engine import models
from shared.pipeline import corrections, delivery, job_events, keys, metrics, people_index, results
from shared.pipeline.delivery import logger
from shared.pipeline.images import ENROLL, HANDED_OFF, RECOGNIZE, USE_CASES, Job, kind_for, person_of
from shared.pipeline.video import send_plan

__all__ = ["ENROLL", "RECOGNIZE", "JobInProgress", "job_id_for", "process_record", "run_job", "warm_up_for_snapshot"]


class JobInProgress(Exception):
    """Another attempt is running the job now; the message comes back after its visibility timeout."""


def warm_up_for_snapshot() -> None:
    """While Lambda takes a SnapStart snapshot (init phase), load the models into it; else nothing."""
    if os.environ.get(SNAPSTART_ENV) == "snap-start":
        cfg = current_config().engine
        models.warm_up(cfg.detector, cfg.ort_threads)


def job_id_for(event: ObjectEvent, kind: str) -> str:
    """A stable id for the job an event asks for (32 hex characters)."""
    return hashlib.sha256(f"{kind}\n{event.identity}".encode()).hexdigest()[:32]


def process_record(record: SQSRecord, handler_kind: str, lambda_context: Any = None) -> list[dict[str, Any]]:
    """Run the jobs of every S3 event in one SQS message; raising makes the message come back."""
    try:
        events = parse_body(record.body)
    except BadEvent as exc:
        logger.error("dropping a message that is not an S3 event", extra={"message_id": record.message_id, "reason": str(exc)})
        return []
    documents = []
    for event in events:
        kind = kind_for(handler_kind, event)
        if kind is None:
            logger.info("ignoring event", extra={"key": event.key, "event_name": event.event_name})
            continue
        document = run_job(event, kind, delivery.receive_count(record), lambda_context)
        if document is not None:
            documents.append(document)
    return documents


class _Attempt:
    """One attempt at one job: its record in the jobs table and its log fields."""

    def __init__(self, job: Job, receive_count: int, lambda_context: Any) -> None:
        self.job, self.receive_count, self.context = job, receive_count, lambda_context
        self.id = delivery.attempt_id(lambda_context)
        self.jobs = JobsTable(job.config.pipeline.jobs_table, job.config.pipeline.job_ttl_days)
        self.log = {"job_id": job.job_id, "kind": job.kind, "bucket": job.bucket, "key": job.key}
        self.started = time.time()

    def claim(self) -> dict[str, Any] | None:
        """The job's record, now ours; None when there is nothing to do (done, or with the video function)."""
        event = self.job.event
        spec = JobSpec(self.job.job_id, self.job.kind, event.bucket, event.key, event.etag, event.version_id,
                       person_of(self.job.kind, event.key), keys.result_key(event.key))
        try:
            return self.jobs.claim(spec, self.id, delivery.lease_s(self.context))
        except JobDone as done:
            logger.info("job already finished; acknowledging", extra={**self.log, "status": done.record.get("status")})
            job_events.send_owed(self.jobs.name, done.record)  # a crash came between its finish and its event
        except JobBusy as busy:
            if busy.record.get("media") != VIDEO:
                logger.warning("job is running in another attempt; retry later", extra=self.log)
                raise JobInProgress(str(busy)) from None
            logger.info("the video function has the job; acknowledging", extra=self.log)
        return None

    def run_use_case(self) -> dict[str, str] | None | str:
        """Run the job's use case: HANDED_OFF for a video, else the error of a permanent failure (or None)."""
        try:
            keys.check_key_length(self.job.key)  # before anything is derived from it
            with timed(self.job.timings, "total"):
                return USE_CASES[self.job.kind](self.job)
        except errors.FaceError as exc:
            return exc.to_dict()

    def hand_off(self, fields: dict[str, Any]) -> None:
        """The video function takes the job: first the record says so (the plan needs it), then the
        plan message goes, again if no plan was recorded yet (after a lost send; planning is idempotent)."""
        record = VideoJobsTable(self.jobs.name).hand_off(self.job.job_id, self.id, fields)
        if "segments_total" not in record:
            send_plan(self.job.config.pipeline.video_queue_url, record)
        logger.info("the video function has the job", extra={**self.log, "timings_ms": results.timings(self.job.timings)})

    def finish(self, error: dict[str, str] | None) -> dict[str, Any]:
        """Write the result document, then record the outcome; the document."""
        document = self.document(FAILED if error else SUCCEEDED, error)
        people_index.record(self.job.config, document)  # the index lists this result before it appears
        if keys.fits_s3(keys.result_key(self.job.key)):  # else (an over-long key) the job record alone says it
            s3.put_json(self.job.bucket, keys.result_key(self.job.key), document)
            corrections.settle(self.job.config, self.job.bucket, document, self.job.corrections_seen)  # one made meanwhile
        try:
            record = self.jobs.finish(self.job.job_id, self.id, document["status"], self.started, keys.result_key(self.job.key), error,
                                      job_events.detail(document, self.job.bucket))
            metrics.job_finished(document)  # counted by the attempt that recorded it
        except LeaseLost:
            logger.warning("lease lost before the job was recorded; the newer attempt owns it", extra=self.log)
        else:  # failing, it raises EventPending: the message comes back, and its redelivery sends the event
            job_events.emit(self.jobs.name, record)
        logger.info(f"job {document['status']}", extra={**self.log, "error": error, "timings_ms": document["timings_ms"]})
        return document

    def retry_or_give_up(self, exc: Exception) -> None:
        """After a failure worth retrying: release the job for the next delivery, or, on the last
        delivery, mark it failed and write the failed result (the message then goes to the DLQ)."""
        reason = delivery.failure_reason(exc)
        extra = {**self.log, "error": reason, "receive_count": self.receive_count}
        if not delivery.is_last_delivery(self.receive_count, self.job.config.pipeline.max_receive_count):
            logger.warning("job attempt failed; it will be retried", extra=extra, exc_info=True)
            delivery.best_effort(lambda: self.jobs.release(self.job.job_id, self.id, reason), self.log)
            return
        logger.exception("job failed on its last delivery", extra=extra)
        error = delivery.retries_exhausted(self.receive_count, reason)
        key = keys.result_key(self.job.key)
        delivery.best_effort(lambda: people_index.record(self.job.config, self.document(FAILED, error)), self.log)
        delivery.best_effort(lambda: s3.put_json(self.job.bucket, key, self.document(FAILED, error)), self.log)
        event = job_events.detail(self.document(FAILED, error), self.job.bucket)
        delivery.best_effort(lambda: job_events.emit(self.jobs.name, self.jobs.finish(
            self.job.job_id, self.id, FAILED, self.started, key, error, event)), self.log)  # an event not put: owed until a redrive
        metrics.job_finished(self.document(FAILED, error))

    def document(self, status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
        """The job's result document."""
        job = self.job
        return results.job_document(job.fields, job_id=job.job_id, kind=job.kind, source=job.key,
                                    event_time=job.event.event_time, status=status, error=error,
                                    threshold=job.config.engine.threshold, timings_ms=job.timings)


def run_job(
    event: ObjectEvent, kind: str, receive_count: int = 1, lambda_context: Any = None, config: Config | None = None
) -> dict[str, Any] | None:
    """Run one job to its end; its result document (None when there is none yet, or no new one:
    already done, or a video the video function finishes)."""
    job = Job(job_id_for(event, kind), kind, event, config or current_config())
    attempt = _Attempt(job, receive_count, lambda_context)
    record = attempt.claim()
    if record is None:
        return None
    logger.info("job started", extra={**attempt.log, "attempt": record.get("attempts")})
    try:
        if record.get("media") == VIDEO:  # delivered again after the hand-off
            attempt.hand_off({})
            return None
        outcome = attempt.run_use_case()
        if outcome == HANDED_OFF:
            attempt.hand_off({"video_started": round(attempt.started, 3), "event_time": event.event_time or None,
                              "source_etag": job.fields.get("source_etag")})
            return None
        return attempt.finish(outcome if isinstance(outcome, dict) else None)
    except job_events.EventPending:  # the job is finished: only its event is owed, on the redelivery
        raise
    except Exception as exc:
        if delivery.is_permanent(exc):
            logger.exception("AWS refused a request for good; the job fails without a retry", extra=attempt.log)
            return attempt.finish(delivery.refused(delivery.failure_reason(exc)))
        attempt.retry_or_give_up(exc)
        raise
