"""EventBridge's default bus: put one event, and mark a job's record once its event is sent.

A job's event is tied to its one conditional end-of-job update (jobs_table.finish / finish_video):
after PutEvents, `mark_sent` sets `event_sent` to the record's `finished_at`, only while that
finish is still the record's. A finished record whose `event_sent` differs from its `finished_at`
has an event owed (a crash between the finish and the PutEvents): a redelivery sends it again.
"""
from __future__ import annotations

import json
from typing import Any

from shared.aws.clients import client, error_code

SOURCE = "lambdaface"
BUS = "default"


class EventNotSent(Exception):
    """EventBridge did not accept the event (a failed entry): the message should come back."""


def put(detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> str:
    """Put one event (source `lambdaface`) on the default bus; its event id. EventNotSent if refused."""
    entry = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail, sort_keys=True),
             "EventBusName": BUS, "Resources": resources or []}
    response = client("events").put_events(Entries=[entry])
    first = (response.get("Entries") or [{}])[0]
    if response.get("FailedEntryCount") or not first.get("EventId"):
        raise EventNotSent(f"{first.get('ErrorCode')}: {first.get('ErrorMessage')}")
    return str(first["EventId"])


def mark_sent(table: str, job_id: str, finished_at: str) -> bool:
    """Record on the job that the event of its finish at `finished_at` is sent; False when the
    record no longer holds that finish (a later attempt finished it again)."""
    try:
        client("dynamodb").update_item(
            TableName=table, Key={"job_id": {"S": job_id}},
            UpdateExpression="SET #sent = :f",
            ConditionExpression="#finished = :f",
            ExpressionAttributeNames={"#sent": "event_sent", "#finished": "finished_at"},
            ExpressionAttributeValues={":f": {"S": finished_at}},
        )
    except Exception as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True
