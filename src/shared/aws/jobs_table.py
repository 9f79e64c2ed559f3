"""Job records in DynamoDB: claim a job (at most one live attempt), then finish or release it.

A record moves `running` -> `succeeded` | `failed`. A `running` record carries a lease
(`lease_until`, epoch seconds): an attempt that dies (worker killed, Lambda timeout) leaves the
lease to expire, and the next delivery claims the job again. A transient failure with retries
left releases the lease at once. A job `failed` with RETRIES_EXHAUSTED can be claimed again, so a
message redriven from the dead-letter queue is processed; any other `failed` job is final.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.aws import dynamo
from shared.clock import iso
from shared.errors import RETRIES_EXHAUSTED
from shared.aws.clients import client, error_code

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


@dataclass(frozen=True)
class JobSpec:
    """What a job is about; stored on its record."""

    job_id: str
    kind: str  # "enroll", "forget" or "recognize"
    bucket: str
    key: str
    etag: str = ""
    version_id: str | None = None
    person: str | None = None
    result_key: str | None = None


class JobDone(Exception):
    """The job already finished (succeeded, or failed for good): nothing to do."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(f"job {record.get('job_id')} is already {record.get('status')}")
        self.record = record


class JobBusy(Exception):
    """Another attempt holds a live lease on the job: try again later."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(f"job {record.get('job_id')} is running in attempt {record.get('attempt_id')}")
        self.record = record


class LeaseLost(Exception):
    """This attempt's lease expired and another attempt took the job over."""


class JobsTable:
    """The jobs table (hash key `job_id`, TTL attribute `expires_at`)."""

    def __init__(self, name: str, ttl_days: int = 30) -> None:
        self.name = name
        self.ttl_s = ttl_days * 86400

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's record (strongly consistent), or None."""
        found = client("dynamodb").get_item(
            TableName=self.name, Key={"job_id": {"S": job_id}}, ConsistentRead=True
        ).get("Item")
        return dynamo.from_item(found) if found else None

    def claim(self, spec: JobSpec, attempt_id: str, lease_s: float) -> dict[str, Any]:
        """Start an attempt: the record, now `running` under this attempt; JobDone or JobBusy if not."""
        now = time.time()
        u = dynamo.Update()
        for attribute, v in vars(spec).items():
            if attribute != "job_id" and v is not None:
                u.set(attribute, v)
        u.set("status", RUNNING).set("attempt_id", attempt_id).set("lease_until", round(now + lease_s, 3))
        u.set("started_at", iso(now)).set("updated_at", iso(now)).set("expires_at", int(now + self.ttl_s))
        u.set_expression("created_at", f"if_not_exists({u.name('created_at')}, {u.val(iso(now))})")
        u.set_expression("attempts", f"if_not_exists({u.name('attempts')}, {u.val(0)}) + {u.val(1)}")
        for stale in ("error", "finished_at", "duration_ms"):
            u.set(stale, None)
        status, lease, error, code = u.name("status"), u.name("lease_until"), u.name("error"), u.name("code")
        condition = (
            f"attribute_not_exists({u.name('job_id')})"
            f" OR ({status} = {u.val(RUNNING)} AND {lease} < {u.val(round(now, 3))})"
            f" OR ({status} = {u.val(FAILED)} AND {error}.{code} = {u.val(RETRIES_EXHAUSTED)}"
            f" AND attribute_not_exists({u.name('media')}))"  # a failed video job is final (video_jobs_table.py)
        )
        record = self._update(spec.job_id, u, condition)
        if record is None:
            raise self._done_or_busy(spec.job_id)
        return record

    def _update(self, job_id: str, u: dynamo.Update, condition: str, extra: str = "") -> dict[str, Any] | None:
        """Apply `u` (plus an `extra` clause such as ADD) if `condition` holds: the record after it,
        or None when the condition failed."""
        kwargs = u.kwargs(condition)
        if extra:
            kwargs["UpdateExpression"] = f"{kwargs['UpdateExpression']} {extra}".strip()
        try:
            response = client("dynamodb").update_item(
                TableName=self.name, Key={"job_id": {"S": job_id}}, ReturnValues="ALL_NEW", **kwargs
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return dynamo.from_item(response["Attributes"])

    def _done_or_busy(self, job_id: str) -> Exception:
        """JobBusy if the job is running, else JobDone: why a conditional update did not apply."""
        record = self.get(job_id) or {"job_id": job_id, "status": "missing"}
        return JobBusy(record) if record.get("status") == RUNNING else JobDone(record)

    def _end(self, job_id: str, attempt_id: str, changes: dict[str, Any], owner_field: str = "attempt_id") -> dict[str, Any]:
        """Apply `changes` while `attempt_id` (in `owner_field`) still owns the running job; LeaseLost if not."""
        u = dynamo.Update()
        for attribute, v in changes.items():
            u.set(attribute, v)
        condition = f"{u.name(owner_field)} = {u.val(attempt_id)} AND {u.name('status')} = {u.val(RUNNING)}"
        record = self._update(job_id, u, condition)
        if record is None:
            raise LeaseLost(f"job {job_id}: {attempt_id} no longer owns it")
        return record

    @staticmethod
    def outcome(status: str, started: float, result_key: str | None, error: dict[str, str] | None) -> dict[str, Any]:
        """The changes that record a job's end: `succeeded`, or `failed` with `error` {code, message}."""
        now = time.time()
        return {"status": status, "finished_at": iso(now), "updated_at": iso(now), "result_key": result_key,
                "duration_ms": round((now - started) * 1000, 1), "error": error, "lease_until": None}

    def finish(
        self, job_id: str, attempt_id: str, status: str, started: float, result_key: str | None,
        error: dict[str, str] | None = None, event: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record the attempt's outcome: `succeeded`, or `failed` with `error` {code, message}; with
        the `event` its finish owes (pipeline/job_events.py), in the same conditional update."""
        return self._end(job_id, attempt_id, {**self.outcome(status, started, result_key, error), "event": event})

    def release(self, job_id: str, attempt_id: str, error: dict[str, str]) -> dict[str, Any]:
        """Give the job back after a transient failure, so the next delivery retries it at once."""
        now = time.time()
        return self._end(job_id, attempt_id, {"lease_until": 0, "last_error": error, "updated_at": iso(now)})
