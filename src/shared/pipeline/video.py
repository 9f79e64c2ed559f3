"""Videos under queries/: recognition fanned out across segments, merged by the last one.

    recognize (runner.py) sees a video by its first bytes: records the hand-off, then sends ONE plan message
    plan                 the video function checks the object (one listing) and probes it through ranged
                         GETs (header and index only), checks the limits, records the plan on the job,
                         and sends the segment messages ten per SendMessageBatch, recording how many
                         are sent every SEND_STEP: a redelivered plan resumes there
    segment              reads only its own part of the video (ranged GETs; FFmpeg seeks), recognizes
                         the sampled frames, stores its partial result at work/segments/<job_id>/<index>.json,
                         then counts itself in its chunk item (video_jobs_table.py); the update that
                         completes the last chunk merges
    merge                claims the job's final lease, reads the partials (in parallel, a window at a
                         time), writes results/<key>.json, marks it succeeded

A permanent error (FaceError) fails the job at once; a segment or plan that keeps failing fails it
on its last delivery (SEGMENT_FAILED / RETRIES_EXHAUSTED) before its message goes to the DLQ.
Every step is idempotent: redelivered messages neither double count nor write twice.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Iterator

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import errors
from shared.aws import gallery_cache, s3, sqs
from shared.aws.gallery_table import GalleryTable
from shared.aws.jobs_table import FAILED, RUNNING, SUCCEEDED, JobBusy, JobDone
from shared.aws.video_jobs_table import VIDEO, VideoJobsTable, chunk_size
from shared.clock import timed
from shared.config import Config, current_config
from shared.engine.video import (VideoInfo, appearances, check_frame_size, plan_segments, probe_video,
                                 recognize_frames, sampled_frame_indices, verified_length, with_screen_time)
from shared.errors import FaceError
from shared.pipeline import corrections, delivery, job_events, keys, metrics, people_index, results, unknowns
from shared.pipeline.delivery import logger
from shared.pipeline.video_copy import check_source, reading, video_view

PLAN, SEGMENT = "plan", "segment"
RESERVE_S = 5.0  # time kept after the last frame: store the partial, count it, maybe merge
MERGE_THREADS = 8
MERGE_WINDOW = 64  # partials read before their frames are folded in (bounded memory for any length)
SEND_STEP = 100  # segment messages sent (10 SendMessageBatch calls) between checkpoints of `segments_sent`


class OutOfTime(Exception):
    """The function would time out before the next frame: stop, and let the message come back."""


def plan_message(job_id: str, bucket: str, key: str, etag: str, event_time: str) -> dict[str, Any]:
    """The message recognize sends for a video: the video function plans its segments."""
    return {"type": PLAN, "job_id": job_id, "bucket": bucket, "key": key, "etag": etag, "event_time": event_time}


def send_plan(queue_url: str, record: dict[str, Any]) -> None:
    """Send the plan message of the video job `record` (once the record says `media: video`)."""
    sqs.send(queue_url, plan_message(record["job_id"], record["bucket"], record["key"],
                                     record.get("source_etag") or "", record.get("event_time") or ""))


def segment_bounds(info: VideoInfo, segment_s: float, sample_fps: float) -> list[list[int]]:
    """[first, end) frames of every segment that has a sampled frame: recomputed from the plan, never stored."""
    return [[a, b] for a, b in plan_segments(info, segment_s) if sampled_frame_indices(info, a, b, sample_fps)]


# --- the video function's messages ----------------------------------------------------------------


def parse_message(body: str | None) -> dict[str, Any] | None:
    """A plan or segment message, or None when `body` is not one (retrying would not help)."""
    try:
        message = json.loads(body or "")
        fields = (message["type"], message["job_id"], message["bucket"], message["key"])
    except (ValueError, KeyError, TypeError):
        return None
    if fields[0] not in (PLAN, SEGMENT) or not all(isinstance(f, str) and f for f in fields):
        return None
    return message


def process_record(record: SQSRecord, lambda_context: Any = None, config: Config | None = None) -> None:
    """Run one plan or segment message; raising makes it come back (and go to the DLQ at the end)."""
    message = parse_message(record.body)
    if message is None:
        logger.error("dropping a message that is not a video message", extra={"message_id": record.message_id})
        return
    config = config or current_config()
    count = delivery.receive_count(record)
    last = delivery.is_last_delivery(count, config.pipeline.max_receive_count)
    step = Step(message, config, lambda_context, count)
    try:
        (step.plan if message["type"] == PLAN else step.segment)()
    except JobDone as done:
        logger.info("video job already finished; acknowledging", extra={**step.log, "status": done.record.get("status")})
        job_events.send_owed(step.table.name, done.record)  # a crash came between its finish and its event
    except JobBusy:
        logger.warning(f"another attempt is finishing the job; {'acknowledging' if last else 'retry later'}", extra=step.log)
        if not last:
            raise
    except FaceError as exc:
        step.fail(step.error(exc.to_dict()))
    except Exception as exc:
        reason = delivery.failure_reason(exc)
        if delivery.is_permanent(exc):  # no retry can change it: fail the job now, acknowledge
            logger.exception("AWS refused a request for good; the video job fails without a retry", extra=step.log)
            delivery.best_effort(lambda: step.fail(step.error(delivery.refused(reason))), step.log)
            return
        if not last:
            logger.warning("video step failed; it will be retried", extra={**step.log, "error": reason}, exc_info=True)
            raise
        logger.exception("video step failed on its last delivery", extra={**step.log, "error": reason})
        delivery.best_effort(lambda: step.fail(step.error(delivery.retries_exhausted(count, reason))), step.log)
        raise


class Step:
    """One delivery of a plan or segment message."""

    def __init__(self, message: dict[str, Any], config: Config, context: Any, receive_count: int) -> None:
        self.message, self.config, self.context, self.receive_count = message, config, context, receive_count
        self.job_id: str = message["job_id"]
        self.bucket: str = message["bucket"]
        self.key: str = message["key"]
        self.etag: str = message.get("etag", "")
        self.table = VideoJobsTable(config.pipeline.jobs_table, config.pipeline.job_ttl_days)
        self.owner = delivery.attempt_id(context)
        self.timings: dict[str, float] = {}
        self.info: VideoInfo | None = None  # once probed (a failed result then tells the duration)
        self.log = {"job_id": self.job_id, "key": self.key, "step": message["type"], "segment": message.get("index"),
                    "receive_count": receive_count}

    # --- plan ---------------------------------------------------------------------------------

    def plan(self) -> None:
        """Probe the video, check the limits, record the plan and send one message per segment."""
        record = self._running_record()
        if "segments_total" not in record:
            record = self._record_plan()
        if int(record.get("segments_sent") or 0) < int(record["segments_total"]):
            self._send_segments(record)

    def _record_plan(self) -> dict[str, Any]:
        video = self.config.video
        with timed(self.timings, "check"):
            size = check_source(self.bucket, self.key, self.etag, video.max_bytes)
        source = video_view(self.bucket, self.key, self.etag, size, video.read_block)
        with timed(self.timings, "probe"), reading(source):
            claimed = probe_video(source)
            check_frame_size(claimed.width, claimed.height, video.max_pixels)
            info = verified_length(source, claimed, Deadline(self.context, RESERVE_S, Deadline.PROBE))
        self.info = info
        if info.frames != claimed.frames:
            logger.warning("the video's header claims more frames than it holds; planning the frames it holds",
                           extra={**self.log, "header_frames": claimed.frames, "frames": info.frames})
        if info.duration_s > video.max_duration_s:
            raise FaceError(errors.VIDEO_TOO_LONG,
                            f"the video lasts {info.duration_s:.1f} s, more than the {video.max_duration_s:g} s allowed")
        total = len(segment_bounds(info, video.segment_s, video.sample_fps))
        return self.table.plan(self.job_id, {
            "video": {"fps": info.fps, "frames": info.frames, "width": info.width, "height": info.height},
            "size": size, "segment_s": video.segment_s, "sample_fps": video.sample_fps, "segments_total": total,
            "chunk_size": chunk_size(total), "segments_sent": 0, "plan_ms": results.timings(self.timings),
            "plan_reads": {"bytes": source.bytes_read, "requests": source.requests},
            **({"header_frames": claimed.frames} if info.frames != claimed.frames else {}),
        })

    def _send_segments(self, record: dict[str, Any]) -> None:
        """Send the segment messages not sent yet, ten per SendMessageBatch, checkpointing every SEND_STEP."""
        info = VideoInfo(**{k: record["video"][k] for k in ("fps", "frames", "width", "height")})
        bounds = segment_bounds(info, float(record["segment_s"]), float(record["sample_fps"]))
        start = sent = int(record.get("segments_sent") or 0)
        deadline = Deadline(self.context, RESERVE_S, Deadline.FAN_OUT)
        while sent < len(bounds):
            deadline()
            step = bounds[sent : sent + SEND_STEP]
            sqs.send_batch(self.config.pipeline.video_queue_url, [
                {"type": SEGMENT, "job_id": self.job_id, "bucket": self.bucket, "key": self.key, "etag": self.etag,
                 "index": i, "count": len(bounds), "first": a, "end": b, "video": record["video"],
                 "sample_fps": record["sample_fps"], "size": record.get("size")}
                for i, (a, b) in enumerate(step, start=sent)
            ])
            sent += len(step)
            self.table.mark_sent(self.job_id, sent)
        logger.info("video planned", extra={**self.log, "segments": len(bounds), "sent": sent - start,
                                            "resumed_at": start, "video": record["video"]})

    # --- segment ------------------------------------------------------------------------------

    def segment(self) -> None:
        """Recognize the segment's sampled frames, store them, count the segment; the last one merges."""
        record = self._running_record()
        index = int(self.message["index"])
        if not self.table.segment_is_done(record, index):
            self._store_segment(index, record.get("event_time") or "")
        complete = self.table.segment_done(record, index)
        logger.info("segment done", extra={**self.log, "total": record["segments_total"], "complete": complete})
        if complete:
            self.merge()

    def _store_segment(self, index: int, event_time: str) -> None:
        started, message = time.perf_counter(), self.message
        info = VideoInfo(**{k: message["video"][k] for k in ("fps", "frames", "width", "height")})
        first, end = int(message["first"]), int(message["end"])
        indices = sampled_frame_indices(info, first, end, float(message["sample_fps"]))
        with timed(self.timings, "load_gallery"):
            gallery = gallery_cache.load(GalleryTable(self.config.pipeline.gallery_table))
        cfg = self.config.video.engine(self.config.engine)
        source = video_view(self.bucket, self.key, self.etag, message.get("size"), self.config.video.read_block)
        unknown: list[tuple[int, int, Any]] | None = [] if self.config.pipeline.remember_unknowns else None
        with timed(self.timings, "detect_embed"), reading(source):
            deadline = Deadline(self.context, RESERVE_S)
            frames = recognize_frames(source, info, indices, gallery, cfg, before_frame=deadline, unknown=unknown,
                                      before_grab=deadline.check)
        if indices and not frames:
            raise FaceError(errors.EMPTY_VIDEO, f"none of the {len(indices)} sampled frames could be decoded")
        if unknown:
            with timed(self.timings, "remember"):
                unknowns.remember_segment(self.config, self.bucket, self.key, self.etag, event_time,
                                          index, frames, [unknowns.SeenFace(*u) for u in unknown])
        self.timings["total"] = (time.perf_counter() - started) * 1000
        with timed(self.timings, "store"):
            s3.put_json(self.bucket, keys.partial_key(self.job_id, index), {
                "index": index, "first": first, "end": end, "frames_expected": len(indices), "frames": frames,
                "reads": {"bytes": source.bytes_read, "requests": source.requests},
                "timings_ms": results.timings(self.timings),
            })

    # --- finishing ----------------------------------------------------------------------------

    def merge(self) -> None:
        """Merge every segment's frames into the result document and mark the job succeeded."""
        record = self.table.claim_final(self.job_id, self.owner, delivery.lease_s(self.context))
        started = time.perf_counter()
        total = int(record["segments_total"])
        frames: list[dict[str, Any]] = []
        segment_ms: list[float] = []
        for partial in self._partials(total):  # a window at a time: memory holds the frames, not every partial
            frames.extend(partial["frames"])
            segment_ms.append(float(partial["timings_ms"].get("total", 0.0)))
        frames.sort(key=lambda f: f["t"])
        unknowns.unify_video(self.config, self.bucket, frames)  # one cluster per unknown person in this video
        records = corrections.for_etag(self.config, self.etag)  # the decisions made about these bytes' faces
        frames, engine_frames = corrections.apply_video(self.config, records, frames)
        info = VideoInfo(**{k: record["video"][k] for k in ("fps", "frames", "width", "height")})
        interval = max(1.0, info.fps / float(record["sample_fps"])) / info.fps
        found = with_screen_time(appearances(frames, interval, info.duration_s))
        timings = {**(record.get("plan_ms") or {}), "segments": sum(segment_ms), "slowest_segment": max(segment_ms, default=0.0),
                   "merge": (time.perf_counter() - started) * 1000}
        fields = {"frames_sampled": len(frames), "sample_fps": float(record["sample_fps"]), "segments": total, "people": [a["person"] for a in found if a["person"]],
                  "appearances": found, "frames": frames, "engine_frames": engine_frames or None}
        self._finish(record, SUCCEEDED, fields, timings, seen=corrections.ids(records) if self.config.pipeline.corrections_table else None)

    def _partials(self, total: int) -> Iterator[dict[str, Any]]:
        """Every segment's partial result, in order, read MERGE_THREADS at a time in parallel."""
        def read(i: int) -> dict[str, Any]:
            return json.loads(s3.get_object(self.bucket, keys.partial_key(self.job_id, i)).data)

        with ThreadPoolExecutor(MERGE_THREADS) as pool:
            for start in range(0, total, MERGE_WINDOW):
                yield from pool.map(read, range(start, min(start + MERGE_WINDOW, total)))

    def fail(self, error: dict[str, str]) -> None:
        """Fail the job with `error` (once: the holder of the final lease writes the failed result)."""
        try:
            record = self.table.claim_final(self.job_id, self.owner, delivery.lease_s(self.context))
        except JobDone as done:
            logger.info("video job already finished; not failing it again", extra={**self.log, "status": done.record.get("status")})
            return
        self._finish(record, FAILED, {}, {**(record.get("plan_ms") or {}), **self.timings}, error)

    def _finish(self, record: dict[str, Any], status: str, fields: dict[str, Any], timings: dict[str, float],
                error: dict[str, str] | None = None, seen: set[str] | None = None) -> None:
        started = float(record.get("video_started") or time.time())
        timings["total"] = (time.time() - started) * 1000
        video = record.get("video") or (asdict(self.info) if self.info else None)
        if video:
            info = VideoInfo(**{k: video[k] for k in ("fps", "frames", "width", "height")})
            fields = {"duration_s": round(info.duration_s, 3), "fps": round(float(info.fps), 3), **fields}
        if record.get("header_frames"):  # the header claimed more frames than the file holds
            fields["header_frames"] = int(record["header_frames"])
        key = keys.result_key(self.key)
        document = results.job_document(
            {**fields, "media": VIDEO, "source_etag": self.etag or None}, job_id=self.job_id, kind="recognize",
            source=self.key, event_time=record.get("event_time"), status=status, error=error,
            threshold=self.config.engine.threshold, timings_ms=timings)
        people_index.record(self.config, document)  # the index lists this result before it appears
        s3.put_json(self.bucket, key, document)
        corrections.settle(self.config, self.bucket, document, seen)  # a correction made meanwhile
        finished = self.table.finish_video(self.job_id, self.owner, status, key, started, error, job_events.detail(document, self.bucket))
        metrics.job_finished(document)
        job_events.emit(self.table.name, finished)  # failing, it raises EventPending: the redelivery sends it
        logger.info(f"video job {status}", extra={**self.log, "error": error, "timings_ms": document["timings_ms"]})

    # --- helpers ------------------------------------------------------------------------------

    def error(self, cause: dict[str, str]) -> dict[str, str]:
        """The job's error for a step's failure: a segment's is SEGMENT_FAILED, naming it."""
        if self.message["type"] != SEGMENT:
            return cause
        m = self.message
        fps = float(m["video"]["fps"])
        where = f"segment {int(m['index']) + 1} of {m['count']} ({int(m['first']) / fps:.2f}-{int(m['end']) / fps:.2f} s)"
        return {"code": errors.SEGMENT_FAILED, "message": f"{where}: {cause['code']}: {cause['message']}"}

    def _running_record(self) -> dict[str, Any]:
        record = self.table.get(self.job_id)
        if record is None or record.get("status") != RUNNING or record.get("media") != VIDEO:
            raise JobDone(record or {"job_id": self.job_id, "status": "missing"})
        return record


class Deadline:
    """Called before each frame analysed (or batch of messages): raises OutOfTime when the next one
    might not finish in time; `check` is the same test without counting a step (before each frame
    decoded, sampled or not). `why` ends the message (the default: a segment's)."""

    SEGMENT = "frames", "the function's timeout is too short for this segment (lower SegmentSeconds or SampleFps)"
    FAN_OUT = "message batches", "the rest is sent when the plan message comes back"
    PROBE = "seeks", "the video's length could not be checked in time (raise VideoTimeout)"

    def __init__(self, context: Any, reserve_s: float, why: tuple[str, str] = SEGMENT) -> None:
        self.remaining: Callable[[], int] | None = getattr(context, "get_remaining_time_in_millis", None)
        self.reserve_s = reserve_s
        self.why = why
        self.last: float | None = None
        self.slowest = 0.0
        self.frames = 0

    def __call__(self) -> None:
        self.check()
        self.frames += 1

    def check(self) -> None:
        """Raise OutOfTime when the remaining time is under the slowest step seen (between any two
        calls) plus the reserve."""
        now = time.monotonic()
        if self.last is not None:
            self.slowest = max(self.slowest, now - self.last)
        self.last = now
        if self.remaining is not None and self.remaining() / 1000.0 < self.slowest + self.reserve_s:
            unit, advice = self.why
            raise OutOfTime(f"stopped after {self.frames} {unit} ({self.slowest:.1f} s each at most): {advice}")
