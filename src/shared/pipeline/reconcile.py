"""Reconciliation: the gallery against `models/`, so that a lost event cannot keep a face forever.

A forget whose message ended in the dead-letter queue (throttles count as receives; timeouts;
transaction conflicts) leaves its face in the gallery. A scheduled run (handlers/reconcile.py, and
`lambdaface forget PERSON` for one person) lists `models/`, reads the gallery's face keys, and:

- **forgets every face whose image is gone**, through the forget job itself: it sends the enroll
  queue the removal event S3 would have sent, stamped with the ordering (`sequencer`, `eventTime`)
  of the very event the gallery last applied to that image. On that tie a delete wins
  (gallery_table's order rules), so the face it saw goes; any later upload has a later stamp and
  wins over the tombstone whichever is applied first, and if one was applied already the removal is
  stale and writes nothing. The stamp is read before a last existence check (a listing of the key):
  an image uploaded after that check carries a newer stamp; one uploaded before it is seen and
  skipped. No clock is compared, so none can be wrong.
- **reports images that should have a face and do not**: no face item, no failed result for the
  ETag there now, older than LAMBDAFACE_RECONCILE_GRACE_S (an upload still being enrolled is not
  reported).

The report (counts, the first keys of each list) is returned and logged.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from shared import errors
from shared.aws import events, inventory, s3, sqs
from shared.aws.gallery_table import GalleryTable
from shared.config import Config
from shared.pipeline import keys
from shared.pipeline.delivery import logger

EPOCH = "1970-01-01T00:00:00.000Z"  # the stamp of a face enrolled without an order item (older than any event)
REPORT_MOST = 100  # keys listed per list in the report (the counts are complete)


@dataclass
class Report:
    """What one reconciliation found and did."""

    images: int = 0
    faces: int = 0
    forgotten: list[str] = field(default_factory=list)  # removal events sent: image gone, face still there
    missing: list[str] = field(default_factory=list)  # image there, no face, no failed result
    failed: int = 0  # images whose enrollment failed for good (their result says why)
    complete: bool = True  # False: out of time before every face was looked at

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "faces": self.faces, "forgotten": len(self.forgotten),
                "forgotten_keys": self.forgotten[:REPORT_MOST], "missing": len(self.missing),
                "missing_keys": self.missing[:REPORT_MOST], "failed": self.failed, "complete": self.complete}


def reconcile(config: Config, bucket: str, person: str | None = None, time_left: Callable[[], bool] = lambda: True,
              queue_url: str | None = None) -> Report:
    """Compare the gallery (of `person`, or everyone) with `models/`: forget the faces whose image is
    gone, report the images without a face (see the module docstring)."""
    queue_url = queue_url or config.pipeline.enroll_queue_url
    if not queue_url:
        raise ValueError("no enroll queue to send removals to (ENROLL_QUEUE_URL is not set)")
    table = GalleryTable(config.pipeline.gallery_table, config.pipeline.gallery_shards)
    listed = inventory.objects(bucket, keys.person_prefix(person) if person else keys.MODELS_PREFIX)
    report, enrolled, bodies = Report(images=len(listed)), set(), []
    for face in inventory.face_keys(table.name, person):  # read after the listing: see _missing
        if not time_left():
            report.complete = False
            break
        report.faces += 1
        enrolled.add(face.image_key)
        if face.image_key in listed or not face.image_key.startswith(keys.MODELS_PREFIX):
            continue
        body = _removal(table, bucket, face.image_key)
        if body is not None:
            bodies.append(body)
            report.forgotten.append(face.image_key)
    if bodies:
        sqs.send_batch(queue_url, bodies)
    if report.complete:
        report.missing, report.failed = _missing(bucket, listed, enrolled, config.pipeline.reconcile_grace_s)
    logger.info("reconciliation", extra={"person": person, **report.to_dict()})
    return report


def _removal(table: GalleryTable, bucket: str, key: str) -> dict[str, Any] | None:
    """The removal event that forgets the face of `key`, or None when there is nothing to forget
    (already forgotten or being forgotten, or the image is there again)."""
    order = table.get(table.order, key)  # first the stamp, then the existence check (module docstring)
    if order is not None and order.get("deleted"):
        return None  # a forget got there first (the face item read was older than this)
    if s3.stat(bucket, key) is not None:
        return None  # uploaded again since the listing: its own event decides
    sequencer = str(order.get("sequencer") or "") if order else ""
    event_time = str(order.get("event_time") or EPOCH) if order else EPOCH
    return events.removal_body(bucket, key, sequencer, event_time)


def _missing(bucket: str, listed: dict[str, inventory.Listed], enrolled: set[str],
             grace_s: float) -> tuple[list[str], int]:
    """(images without a face and without a failed result, images whose enrollment failed)."""
    missing, failed, now = [], 0, time.time()
    for key, entry in sorted(listed.items()):
        if key in enrolled or key.endswith("/") or now - entry.modified < grace_s:
            continue
        try:
            keys.parse_model_key(key)
            keys.check_key_length(key)
        except errors.FaceError:
            failed += 1  # refused for its key: its result (or job) says so
            continue
        result = _result(bucket, key)
        if result and result.get("status") == "failed" and result.get("source_etag") in (entry.etag, None):
            failed += 1
        else:
            missing.append(key)
    return missing, failed


def _result(bucket: str, key: str) -> dict[str, Any] | None:
    try:
        document = json.loads(s3.get_object(bucket, keys.result_key(key)).data)
    except (s3.ObjectMissing, ValueError):
        return None
    return document if isinstance(document, dict) else None
