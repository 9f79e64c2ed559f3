"""A video job's state, on its record in the jobs table (the record its recognize job created).

    hand_off      recognize saw a video: `media` = "video", the recognize lease released
    plan          the video function probed it: `video`, `segments_total`, ... (once)
    segment_done  ADD the segment's index to the string set `segments_done` (idempotent), ALL_NEW:
                  the worker whose update completes the set merges
    claim_final   a lease on finishing the job (merge, or failure), like a job attempt's lease
    finish_video  `succeeded` | `failed`, by the lease holder only
"""
from __future__ import annotations

import time
from typing import Any

from shared.aws import dynamo
from shared.aws.jobs_table import FAILED, RUNNING, JobDone, JobsTable
from shared.clock import iso
from shared.pipeline.keys import segment_id

VIDEO = "video"


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

    def mark_sent(self, job_id: str) -> dict[str, Any]:
        """Every segment message was sent."""
        u = dynamo.Update().set("segments_sent", True).set("updated_at", iso(time.time()))
        record = self._update(job_id, u, f"{u.name('status')} = {u.val(RUNNING)}")
        if record is None:
            raise JobDone(self.get(job_id) or {"job_id": job_id})
        return record

    def segment_done(self, job_id: str, index: int) -> dict[str, Any]:
        """Count segment `index` as done (again: no change); the record after the update."""
        u = dynamo.Update().set("updated_at", iso(time.time()))
        done, one = u.name("segments_done"), u.val({segment_id(index)})
        record = self._update(job_id, u, f"{u.name('status')} = {u.val(RUNNING)}", extra=f"ADD {done} {one}")
        if record is None:
            raise JobDone(self.get(job_id) or {"job_id": job_id})
        return record

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
        self, job_id: str, owner: str, status: str, result_key: str, started: float, error: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Record the outcome (`succeeded`, or `failed` with `error`); LeaseLost if `owner` lost the lease."""
        changes = {**self.outcome(status, started, result_key, error if status == FAILED else None), "final_lease": None}
        return self._end(job_id, owner, changes, owner_field="final_owner")
