"""One event per finished job, on EventBridge's default bus (source `lambdaface`).

The event a finish owes is written by the job's one conditional end-of-job update
(`JobsTable.finish`, `VideoJobsTable.finish_video`: the record's `event`, from `detail`). Right
after it, `emit` puts the event, then marks the record `event_sent` = its `finished_at`
(aws/event_bus.py). A delivery that finds the job finished without that mark (`send_owed`: the
worker died, or EventBridge refused, in between) puts it then, from the record. So a redelivered
message sends nothing twice; what remains at-least-once is a worker dying (or the mark failing)
after the PutEvents and before the mark, or two deliveries of one message racing inside that
moment: the event then goes out twice. It never goes out before its finish.

Detail (no embeddings, no face boxes): job_id, kind, media ("photo" or "video" for recognize),
status, bucket, source (the job's key), result_key, person (enroll, forget), people, unknown_faces,
unknown_seen, unknown_clusters (the `cluster` of the result's unknown faces), error_code, finished_at.
"""
from __future__ import annotations

from typing import Any

from shared.aws import event_bus
from shared.aws.jobs_table import FAILED, SUCCEEDED
from shared.pipeline import delivery, keys

MAX_LISTED = 200  # people and clusters listed in one event (EventBridge takes 256 KB an entry)


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


def detail(document: dict[str, Any], bucket: str) -> dict[str, Any]:
    """The event's detail for a result document (its `finished_at` is the record's, added by `emit`)."""
    kind = str(document.get("kind"))
    person = document.get("person")
    people = document.get("people") if kind == "recognize" else ([person] if person else [])
    unknown = _unknown_faces(document) if kind == "recognize" else []
    clusters = _clusters(document)
    result_key = keys.result_key(str(document.get("source") or ""))
    out = {
        "job_id": document.get("job_id"), "kind": kind, "status": document.get("status"), "bucket": bucket,
        "source": document.get("source"), "result_key": result_key if keys.fits_s3(result_key) else None,
        "person": person, "people": sorted(set(people or []))[:MAX_LISTED], "unknown_faces": len(unknown),
        "unknown_seen": bool(unknown), "unknown_clusters": clusters[:MAX_LISTED],
        "error_code": (document.get("error") or {}).get("code"),
    }
    if kind == "recognize":
        out["media"] = "video" if document.get("media") == "video" else "photo"
    if len(clusters) > MAX_LISTED or len(set(people or [])) > MAX_LISTED:
        out["truncated"] = True  # the result document lists them all
    return {k: v for k, v in out.items() if v is not None}


def detail_type(event_detail: dict[str, Any]) -> str:
    """The detail-type of a job's event: one per kind (a photo's and a video's recognition apart)."""
    return DETAIL_TYPES[event_detail.get("media") or event_detail["kind"]]


def emit(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """Put the event the finish `record` owes (the record after the end-of-job update), then mark it
    sent; the event's detail. EventPending when it could not be put."""
    finished_at = str(record["finished_at"])
    event_detail = {**record["event"], "finished_at": finished_at}
    try:
        event_bus.put(detail_type(event_detail), event_detail)
    except Exception as exc:
        raise EventPending(f"job {record['job_id']} finished; its event is not sent: {exc}") from exc
    # failing, the message is still acknowledged: only a later delivery (if one comes) would send it again
    delivery.best_effort(lambda: event_bus.mark_sent(table, str(record["job_id"]), finished_at), {"job_id": record["job_id"]})
    return event_detail


def owed(record: dict[str, Any]) -> bool:
    """Whether a finished job's event may not have gone out (its finish's `event` is not marked sent)."""
    return (record.get("status") in (SUCCEEDED, FAILED) and bool(record.get("finished_at")) and bool(record.get("event"))
            and record.get("event_sent") != record.get("finished_at"))


def send_owed(table: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """On a delivery that found the job finished: put its event if it is owed; the detail, or None."""
    return emit(table, record) if owed(record) else None
