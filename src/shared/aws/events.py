"""S3 event notifications as delivered by SQS: parse, URL-decode keys, skip test events; and the
removal event reconciliation sends for an image whose own event was lost (`removal_body`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, unquote_plus


class BadEvent(ValueError):
    """A message that is not an S3 event notification (retrying will not fix it)."""


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 object event: what happened to which object."""

    bucket: str
    key: str  # URL-decoded
    event_name: str  # e.g. "ObjectCreated:Put", "ObjectRemoved:Delete"
    etag: str = ""  # absent on ObjectRemoved events
    version_id: str | None = None
    sequencer: str = ""  # orders events on one key; absent in moto's notifications
    event_time: str = ""

    @property
    def created(self) -> bool:
        return self.event_name.startswith("ObjectCreated")

    @property
    def removed(self) -> bool:
        return self.event_name.startswith("ObjectRemoved")

    @property
    def identity(self) -> str:
        """Names this event (not just this object): the same notification delivered again gives
        the same identity; a new upload of the same bytes at the same key gives a new one."""
        return "\n".join(
            [self.bucket, self.key, self.event_name.split(":")[0], self.version_id or self.etag, self.sequencer or self.event_time]
        )


def _object_event(record: dict[str, Any]) -> ObjectEvent:
    s3 = record["s3"]
    obj = s3.get("object") or s3["get_object"]
    return ObjectEvent(
        bucket=s3["bucket"]["name"],
        key=unquote_plus(obj["key"]),
        event_name=record["eventName"],
        etag=str(obj.get("eTag") or "").strip('"'),
        version_id=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or "",
        event_time=record.get("eventTime") or "",
    )


def parse_body(body: str | None) -> list[ObjectEvent]:
    """The object events in an SQS message body; [] for `s3:TestEvent`; BadEvent if not S3's."""
    try:
        message = json.loads(body or "")
    except json.JSONDecodeError as exc:
        raise BadEvent(f"message body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise BadEvent("message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise BadEvent("message body has no S3 'Records'")
    try:
        return [_object_event(r) for r in records if str(r.get("eventSource", "aws:s3")) == "aws:s3"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise BadEvent(f"malformed S3 event record: missing {exc}") from None


RECONCILER = "lambdaface-reconcile"  # the principal named in the removal events reconciliation sends


def removal_body(bucket: str, key: str, sequencer: str, event_time: str, region: str = "") -> dict[str, Any]:
    """An SQS message body announcing that `key` was deleted, as S3 would write it, stamped with
    `sequencer`/`event_time` (the ordering of the event the gallery last applied to the key)."""
    obj: dict[str, Any] = {"key": quote_plus(key)}
    if sequencer:
        obj["sequencer"] = sequencer
    record = {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region, "eventTime": event_time,
        "eventName": "ObjectRemoved:Delete", "userIdentity": {"principalId": RECONCILER},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }
    return {"Records": [record]}
