"""SQS messages between functions: JSON bodies, sent one at a time or ten per request."""
from __future__ import annotations

import json
from typing import Any

from shared.aws.clients import client

BATCH = 10  # SendMessageBatch's limit
ATTEMPTS = 3  # tries for entries a batch reports as failed by SQS itself (SenderFault false)


class SendFailed(Exception):
    """Some messages could not be sent; the caller's message comes back and sends them again."""


def send(queue_url: str, body: dict[str, Any]) -> str:
    """Send one JSON message; its MessageId."""
    return client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))["MessageId"]


def send_batch(queue_url: str, bodies: list[dict[str, Any]]) -> int:
    """Send every body, ten per SendMessageBatch, retrying entries SQS failed; how many were sent."""
    for start in range(0, len(bodies), BATCH):
        pending = {str(n): json.dumps(b) for n, b in enumerate(bodies[start : start + BATCH])}
        for _ in range(ATTEMPTS):
            entries = [{"Id": i, "MessageBody": body} for i, body in pending.items()]
            response = client("sqs").send_message_batch(QueueUrl=queue_url, Entries=entries)
            failed = response.get("Failed") or []
            if any(f.get("SenderFault") for f in failed):
                raise SendFailed(f"SQS refused messages: {failed}")
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
            if not pending:
                break
        if pending:
            raise SendFailed(f"{len(pending)} messages not sent to {queue_url} after {ATTEMPTS} tries")
    return len(bodies)
