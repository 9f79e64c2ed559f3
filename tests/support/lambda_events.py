"""Events as Lambda gives them to a handler, and delivery the way Lambda's SQS event source does it.

Records are built by the local stack's own builder (lambdaface.local.workers.sqs_record), which
test_local_workers.py checks against events/enroll.json; the context is the workers' LambdaContext.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Callable
from urllib.parse import quote_plus

from lambdaface.local.workers import LambdaContext, failed_ids, sqs_record

REGION, ACCOUNT_ID = "us-east-1", "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:lambdaface-test"
OK: dict[str, Any] = {"batchItemFailures": []}  # a handler's answer when every record succeeded

Handler = Callable[[dict[str, Any], Any], Any]


def context(timeout_s: int = 60, function_name: str = "lambdaface-test", memory_mb: int = 1024) -> LambdaContext:
    """The context of one invocation: its remaining time counts down from `timeout_s`."""
    return LambdaContext(function_name, memory_mb, timeout_s, REGION)


def s3_event_body(bucket: str, key: str, etag: str = "", event_name: str = "ObjectCreated:Put", **extra: Any) -> str:
    """An S3 event notification as S3 puts it in an SQS message body (key URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key), "size": extra.pop("size", 0), **extra}
    if etag:
        obj["eTag"] = etag
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event_name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }
    return json.dumps({"Records": [record]})


def s3_test_event_body(bucket: str) -> str:
    """The message S3 sends when a notification configuration is saved."""
    return json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T12:00:00Z", "Bucket": bucket})


def record(body: str, receive_count: int = 1, message_id: str | None = None, arn: str = QUEUE_ARN) -> dict[str, Any]:
    """One record of an SQS batch event, for a message that never was on a queue."""
    message = {
        "MessageId": message_id or str(uuid.uuid4()),
        "ReceiptHandle": "handle-" + uuid.uuid4().hex,
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1714564800000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1714564800001",
        },
    }
    return sqs_record(message, arn, REGION)


def redelivered(rec: dict[str, Any], receive_count: int) -> dict[str, Any]:
    """The same record, delivered for the `receive_count`-th time."""
    return {**rec, "attributes": {**rec["attributes"], "ApproximateReceiveCount": str(receive_count)}}


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    """The event of one invocation."""
    return {"Records": list(records)}


class LambdaQueue:
    """An SQS queue and Lambda's event source for it: receive messages, call the handler with
    their batch event, delete the ones it did not report as failed (Lambda's rules)."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs, self.url = sqs, url
        self.arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    @classmethod
    def create(cls, sqs: Any, name: str, **attributes: str) -> "LambdaQueue":
        return cls(sqs, sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    def receive(self, most: int = 10) -> list[dict[str, Any]]:
        """Up to `most` (at most 10) visible messages; they stay invisible for the visibility timeout."""
        return self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=most, WaitTimeSeconds=0, AttributeNames=["All"]
        ).get("Messages", [])

    def receive_all(self) -> list[dict[str, Any]]:
        """Every visible message."""
        messages = []
        while got := self.receive():
            messages.extend(got)
        return messages

    def event(self, messages: list[dict[str, Any]], receive_count: int | None = None) -> dict[str, Any]:
        """The batch event Lambda makes of `messages` (each delivered `receive_count` times, if given)."""
        records = [sqs_record(m, self.arn, REGION) for m in messages]
        if receive_count is not None:
            records = [redelivered(r, receive_count) for r in records]
        return batch(*records)

    def deliver(
        self, handler: Handler, messages: list[dict[str, Any]] | None = None, receive_count: int | None = None,
        ctx: LambdaContext | None = None,
    ) -> Any:
        """Invoke `handler` once with `messages` (default: what is visible now, up to 10, at least
        one); delete those that succeeded; the handler's response."""
        if messages is None:
            messages = self.receive()
            assert messages, f"nothing on {self.url}"
        event = self.event(messages, receive_count)
        response = handler(event, ctx or context())
        failed = failed_ids(response, event["Records"], report_failures=True)
        done = [m for m in messages if m["MessageId"] not in failed]
        for m in done:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return response
