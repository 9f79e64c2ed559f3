"""A video job's state, on its record in the jobs table (the record its recognize job created).

    hand_off      recognize saw a video: `media` = "video", the recognize lease released
    plan          the video function probed it: `video`, `segments_total`, `chunk_size`, ... (once)
    mark_sent     `segments_sent`: how many segment messages are sent (the fan-out resumes there)
    segment_done  ADD the segment's id to its chunk item's string set `done` (idempotent, ALL_NEW);
                  the update that completes a chunk ADDs the chunk's id to the job's `chunks_done`
                  (idempotent too); the update that completes `chunks_done` merges
    claim_final   a lease on finishing the job (merge, or failure), like a job attempt's lease
    finish_video  `succeeded` | `failed`, by the lease holder only

Bounded state: a segment's id goes to a chunk item (`<job_id>#segments-<chunk>`, at most
`chunk_size` ids, about 0.6 KB: one write unit), never to the job record, which holds at most
CHUNKS ids whatever the video's length. Per segment: one chunk write, plus one job write per chunk.
A redelivered segment repeats both ADDs: nothing counts twice and a crash between them loses nothing.
"""
from __future__ import annotations

import math
import time
from typing import Any

from shared.aws import dynamo
from shared.aws.jobs_table import FAILED, RUNNING, JobDone, JobsTable
from shared.aws.clients import client
from shared.clock import iso
from shared.pipeline.keys import segment_id

VIDEO = "video"
SEGMENTS_KIND = "video-segments"  # the `kind` of a chunk item
CHUNKS = 100  # most chunk ids a job record holds
MIN_CHUNK = 100  # segments per chunk at least


def chunk_size(segments: int) -> int:
    """Segments per chunk item for a video of `segments` segments (at most CHUNKS chunks)."""
    return max(MIN_CHUNK, math.ceil(segments / CHUNKS))


def chunk_item_id(job_id: str, chunk: int) -> str:
    """The key of a chunk item in the jobs table."""
    return f"{job_id}#segments-{chunk:04d}"


class VideoJobsTable(JobsTable):
    """Video-specific updates of job records; every one is conditional on the job still running."""

    def hand_off(self, job_id: str, attempt_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The recognize attempt `attempt_id` passes the job to the video function."""
        changes = {"media": VIDEO, "lease_until": 0, "updated_at": iso(time.time()), **fields}
        return self._end(job_id, attempt_id, changes)

    def plan(self, job_id: str, plan: dict[str, Any]) -> dict[str, Any]:
        """Record the segment plan once; a later call gets the plan already recorded (or JobDone)."""
        u = dynamo.Update().set("updated_at", iso(time.time()))
        for name, value in plan.items():
            u.set(name, value)
        condition = (
            f"{u.name('status')} = {u.val(RUNNING)} AND {u.name('media')} = {u.val(VIDEO)}"
            f" AND attribute_not_exists({u.name('segments_total')})"
        )
        record = self._update(job_id, u, condition)
        if record is not None:
            return record
        record = self.get(job_id) or {"job_id": job_id, "status": "missing"}
        if record.get("status") == RUNNING and "segments_total" in record:
            return record
        raise JobDone(record)

    def mark_sent(self, job_id: str, sent: int) -> dict[str, Any]:
        """The first `sent` segment messages were sent (a redelivered plan resumes after them)."""
        u = dynamo.Update().set("segments_sent", sent).set("updated_at", iso(time.time()))
        record = self._update(job_id, u, f"{u.name('status')} = {u.val(RUNNING)}")
        if record is None:
            raise JobDone(self.get(job_id) or {"job_id": job_id})
        return record

    def segment_is_done(self, record: dict[str, Any], index: int) -> bool:
        """Whether segment `index` of the job `record` was counted already (one read of its chunk item)."""
        chunk = index // int(record["chunk_size"])
        found = client("dynamodb").get_item(
            TableName=self.name, Key={"job_id": {"S": chunk_item_id(record["job_id"], chunk)}}, ConsistentRead=True,
            ProjectionExpression="#d", ExpressionAttributeNames={"#d": "done"},
        ).get("Item")
        return bool(found) and segment_id(index) in dynamo.from_item(found).get("done", [])

    def segment_done(self, record: dict[str, Any], index: int) -> bool:
        """Count segment `index` of the job `record` (again: no change); whether every segment is counted."""
        job_id, size, total = record["job_id"], int(record["chunk_size"]), int(record["segments_total"])
        chunk = index // size
        u = dynamo.Update().set("kind", SEGMENTS_KIND).set("parent_job", job_id).set("chunk", chunk)
        u.set("key", f"{record.get('key', '')}#segments-{chunk:04d}").set("expires_at", record.get("expires_at"))
        done = self._add(chunk_item_id(job_id, chunk), u, "done", segment_id(index), None)
        if done is None or len(done["done"]) < min(size, total - chunk * size):
            return False
        u = dynamo.Update().set("updated_at", iso(time.time()))
        job = self._add(job_id, u, "chunks_done", segment_id(chunk), f"{u.name('status')} = {u.val(RUNNING)}")
        if job is None:
            raise JobDone(self.get(job_id) or {"job_id": job_id})
        return len(job["chunks_done"]) >= math.ceil(total / size)

    def _add(self, item_id: str, u: dynamo.Update, attribute: str, member: str, condition: str | None) -> dict[str, Any] | None:
        """`u` plus ADD `member` to the string set `attribute` of item `item_id`: the item after it (None if `condition` failed)."""
        name, one = u.name(attribute), u.val({member})
        return self._update(item_id, u, condition or "", extra=f"ADD {name} {one}")

    def claim_final(self, job_id: str, owner: str, lease_s: float) -> dict[str, Any]:
        """Take the right to finish the job for `lease_s` seconds; JobBusy if another holds it, JobDone."""
        now = time.time()
        u = dynamo.Update().set("final_owner", owner).set("final_lease", round(now + lease_s, 3))
        lease = u.name("final_lease")
        condition = (
            f"{u.name('status')} = {u.val(RUNNING)}"
            f" AND (attribute_not_exists({lease}) OR {lease} < {u.val(round(now, 3))})"
        )
        record = self._update(job_id, u, condition)
        if record is None:
            raise self._done_or_busy(job_id)
        return record

    def finish_video(
        self, job_id: str, owner: str, status: str, result_key: str, started: float, error: dict[str, str] | None = None,
        event: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record the outcome (`succeeded`, or `failed` with `error`) and the `event` it owes; LeaseLost if `owner` lost the lease."""
        changes = {**self.outcome(status, started, result_key, error if status == FAILED else None), "final_lease": None,
                   "event": event}
        return self._end(job_id, owner, changes, owner_field="final_owner")
