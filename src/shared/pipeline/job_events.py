"""One event per finished job, on EventBridge's default bus (source `lambdaface`).

`emit` runs right after the job's one conditional end-of-job update (runner.py, video.py): it puts
the event, then marks the record `event_sent` = its `finished_at` (aws/event_bus.py). A redelivery
that finds the job finished without that mark (`send_owed`) sends it again, from the result
document. So a redelivered message sends nothing twice; what remains at-least-once is a crash (or
a failed mark) after the PutEvents and before the mark, or two deliveries of one message racing
inside that window: the event can then go out twice. An event never goes out before its finish.

Detail (no embeddings, no face boxes): job_id, kind, media ("photo" or "video" for recognize),
status, bucket, source (the job's key), result_key, person (enroll, forget), people, unknown_faces,
unknown_seen, unknown_clusters (the `cluster` of the result's unknown faces), error_code, finished_at.
"""
from __future__ import annotations

import json
from typing import Any

from shared.aws import event_bus, s3
from shared.aws.jobs_table import FAILED, SUCCEEDED
from shared.pipeline import delivery, keys

class EventPending(Exception):
    """The job finished but its event did not go out: the message must come back (send_owed)."""


DETAIL_TYPES = {
    "enroll": "Enroll job finished",
    "forget": "Forget job finished",
    "photo": "Photo recognition finished",
    "video": "Video recognition finished",
}


def _unknown_faces(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The result's unknown faces: a photo's faces without a person, a video's appearances without one."""
    if document.get("media") == "video":
        return [a for a in document.get("appearances") or [] if not a.get("person")]
    return [f for f in document.get("faces") or [] if not f.get("person")]


def _clusters(document: dict[str, Any]) -> list[str]:
    """Every distinct `cluster` of the result's faces (a video's frames too), in first-seen order."""
    faces = [*(document.get("faces") or []), *(document.get("appearances") or []),
             *(f for frame in document.get("frames") or [] for f in frame.get("faces") or [])]
    return list(dict.fromkeys(str(f["cluster"]) for f in faces if f.get("cluster")))


def detail(document: dict[str, Any], bucket: str, result_key: str | None, finished_at: str) -> dict[str, Any]:
    """The event's detail for a result document."""
    kind = str(document.get("kind"))
    person = document.get("person")
    people = document.get("people") if kind == "recognize" else ([person] if person else [])
    unknown = _unknown_faces(document) if kind == "recognize" else []
    out = {
        "job_id": document.get("job_id"), "kind": kind, "status": document.get("status"), "bucket": bucket,
        "source": document.get("source"), "result_key": result_key, "person": person,
        "people": sorted(set(people or [])), "unknown_faces": len(unknown), "unknown_seen": bool(unknown),
        "unknown_clusters": _clusters(document), "error_code": (document.get("error") or {}).get("code"),
        "finished_at": finished_at,
    }
    if kind == "recognize":
        out["media"] = "video" if document.get("media") == "video" else "photo"
    return {k: v for k, v in out.items() if v is not None}


def detail_type(event_detail: dict[str, Any]) -> str:
    """The detail-type of a job's event: one per kind (a photo's and a video's recognition apart)."""
    return DETAIL_TYPES[event_detail.get("media") or event_detail["kind"]]


def emit(table: str, bucket: str, document: dict[str, Any], record: dict[str, Any],
         result_key: str | None = "") -> dict[str, Any]:
    """Send the event of the finish `record` (the jobs table's record after the end-of-job update;
    its `result_key` unless given, None when a key too long for S3 wrote none), then mark it sent; the detail."""
    finished_at = str(record["finished_at"])
    if result_key == "":
        result_key = record.get("result_key") if keys.fits_s3(str(record.get("result_key") or "")) else None
    event_detail = detail(document, bucket, result_key, finished_at)
    try:
        event_bus.put(detail_type(event_detail), event_detail)
    except Exception as exc:
        raise EventPending(f"job {record['job_id']} finished; its event is not sent: {exc}") from exc
    # failing, the message is still acknowledged: a redelivery (if one comes) sends the event again
    delivery.best_effort(lambda: event_bus.mark_sent(table, str(record["job_id"]), finished_at), {"job_id": record["job_id"]})
    return event_detail


def owed(record: dict[str, Any]) -> bool:
    """Whether a finished job's event may not have gone out (no `event_sent` for its finish)."""
    return (record.get("status") in (SUCCEEDED, FAILED) and bool(record.get("finished_at"))
            and record.get("event_sent") != record.get("finished_at"))


def send_owed(table: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """On a redelivery that found the job finished: send its event if it is owed (from the result
    document, or the record when there is none); the detail, or None when nothing was owed."""
    if not owed(record):
        return None
    bucket, result_key = str(record.get("bucket") or ""), record.get("result_key")
    document = _result(bucket, result_key) if bucket and result_key else None
    if document is None or document.get("job_id") != record.get("job_id"):  # none, or a newer job's
        result_key = None
        document = {"job_id": record["job_id"], "kind": record.get("kind"), "source": record.get("key"),
                    "status": record.get("status"), "person": record.get("person"), "error": record.get("error"),
                    "media": record.get("media")}
    return emit(table, bucket, document, record, result_key)


def _result(bucket: str, key: str) -> dict[str, Any] | None:
    """The result document at `key`, or None when there is none."""
    try:
        return json.loads(s3.get_object(bucket, key).data)
    except s3.ObjectMissing:
        return None
