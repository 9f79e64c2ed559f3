"""Reconciliation (issue 20, item 4), through the real enroll and reconcile handlers against moto's
server, with S3 notifications on a real queue: a face whose forget message was lost (the object
deleted, its event never delivered: what a dead letter leaves) is forgotten by the next run, in
order with uploads of the same key however the two interleave; images without a face are reported."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.lambda_events import LambdaQueue, context
from support.moto import MotoResources, moto_resources

from handlers import enroll
from handlers import reconcile as reconcile_handler
from shared.aws import gallery_cache
from shared.aws.events import parse_body
from shared.config import current_config
from shared.pipeline import reconcile

OK: dict[str, Any] = {"batchItemFailures": []}


class Stack:
    """Resources, S3 -> enroll queue notifications, and the reconciler's environment."""

    def __init__(self, aws: MotoResources, queue: LambdaQueue) -> None:
        self.aws, self.queue = aws, queue

    def deliver(self) -> Any:
        return self.queue.deliver(enroll.handler)

    def drop(self) -> int:
        """Receive and delete every waiting message without delivering it (a lost event)."""
        messages = self.queue.receive_all()
        for m in messages:
            self.aws.sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def faces(self) -> list[str]:
        return sorted(i["image_key"] for i in self.aws.scan(self.aws.gallery_table) if not i["person"].startswith("#"))

    def run(self, clock_ahead_s: float = 0.0) -> dict[str, Any]:
        """One scheduled run (with the reconciler's clock `clock_ahead_s` ahead of S3's)."""
        if not clock_ahead_s:
            return reconcile_handler.handler({"detail-type": "Scheduled Event"}, context())
        real = time.time
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(time, "time", lambda: real() + clock_ahead_s)
            return reconcile_handler.handler({"detail-type": "Scheduled Event"}, context())


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[Stack]:
    with moto_resources(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1", LAMBDAFACE_GALLERY_COMPACT_EVERY="1") as aws:
        queue = LambdaQueue.create(aws.sqs, f"{aws.bucket}-enroll")
        aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue.arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "models/"}]}}}]})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENROLL_QUEUE_URL", queue.url)
            mp.setenv("LAMBDAFACE_RECONCILE_GRACE_S", "0")
            fresh = Stack(aws, queue)
            fresh.drop()  # S3's test event
            yield fresh
    gallery_cache.forget_cache()


def enroll_john(stack: Stack, faces_dir: Path, *names: str) -> None:
    for name in names:
        stack.aws.put(f"models/john/{name}.jpg", (faces_dir / f"seed/{name}.jpg").read_bytes())
    messages = stack.queue.receive_all()
    assert len(messages) == len(names)
    assert stack.queue.deliver(enroll.handler, messages) == OK


def snapshot_keys(aws: MotoResources) -> set[str]:
    found: set[str] = set()
    for key in aws.keys("gallery/snapshots/"):
        if key.endswith("index.json"):
            found |= set(json.loads(aws.get(key))["keys"])
    return found


def test_a_dead_lettered_forget_is_done_by_the_next_reconciliation(stack: Stack, faces_dir: Path) -> None:
    enroll_john(stack, faces_dir, "john0", "john1")
    assert stack.faces() == ["models/john/john0.jpg", "models/john/john1.jpg"]
    stack.aws.delete("models/john/john0.jpg")
    assert stack.drop() == 1  # the forget's message is lost: the face stays, nothing repairs it
    assert stack.faces() == ["models/john/john0.jpg", "models/john/john1.jpg"]

    report = stack.run()
    assert (report["forgotten"], report["forgotten_keys"], report["faces"], report["images"]) == (
        1, ["models/john/john0.jpg"], 2, 1)
    [message] = stack.queue.receive_all()
    [event] = parse_body(message["Body"])
    assert (event.key, event.removed) == ("models/john/john0.jpg", True)
    assert stack.queue.deliver(enroll.handler, [message]) == OK
    assert stack.faces() == ["models/john/john1.jpg"]
    result = stack.aws.result("models/john/john0.jpg")
    assert (result["kind"], result["status"], result["removed"]) == ("forget", "succeeded", True)
    assert "models/john/john0.jpg" not in snapshot_keys(stack.aws)  # the forget job's compaction ran too
    # nothing left to do: the next run sends nothing
    assert stack.run()["forgotten"] == 0 and stack.queue.receive_all() == []


def test_an_upload_after_the_removal_was_sent_wins_in_either_order(stack: Stack, faces_dir: Path) -> None:
    key = "models/john/john0.jpg"
    enroll_john(stack, faces_dir, "john0")
    stack.aws.delete(key)
    stack.drop()
    assert stack.run(clock_ahead_s=120)["forgotten"] == 1  # no clock decides the order
    [removal] = stack.queue.receive_all()
    # The image comes back (another photo) before the removal is delivered; its upload is enrolled first.
    stack.aws.put(key, (faces_dir / "seed/john1.jpg").read_bytes())
    [upload] = stack.queue.receive_all()
    etag = stack.aws.etag(key)
    assert stack.queue.deliver(enroll.handler, [upload]) == OK
    assert stack.queue.deliver(enroll.handler, [removal]) == OK  # stale: the new face stays
    [item] = [i for i in stack.aws.scan(stack.aws.gallery_table) if i["image_key"] == key and i["person"] == "john"]
    assert item["etag"] == etag
    assert stack.aws.result(key)["removed"] is False


def test_an_upload_enrolled_after_the_removal_is_applied_stays(stack: Stack, faces_dir: Path) -> None:
    key = "models/john/john0.jpg"
    enroll_john(stack, faces_dir, "john0")
    stack.aws.delete(key)
    stack.drop()
    assert stack.run(clock_ahead_s=120)["forgotten"] == 1
    [removal] = stack.queue.receive_all()
    stack.aws.put(key, (faces_dir / "seed/john1.jpg").read_bytes())
    [upload] = stack.queue.receive_all()
    assert stack.queue.deliver(enroll.handler, [removal]) == OK  # the old face goes...
    assert stack.queue.deliver(enroll.handler, [upload]) == OK  # ...and the new upload is enrolled
    [item] = [i for i in stack.aws.scan(stack.aws.gallery_table) if i["image_key"] == key and i["person"] == "john"]
    assert item["etag"] == stack.aws.etag(key)


def test_an_image_back_before_the_check_is_left_to_its_own_event(stack: Stack, faces_dir: Path) -> None:
    key = "models/john/john0.jpg"
    enroll_john(stack, faces_dir, "john0")
    stack.aws.delete(key)
    stack.drop()
    calls = []

    def upload_after_the_listing() -> bool:  # runs after the listing and the face scan, before each face
        if not calls:
            stack.aws.put(key, (faces_dir / "seed/john0.jpg").read_bytes())
        calls.append(1)
        return True

    report = reconcile.reconcile(current_config(), stack.aws.bucket, time_left=upload_after_the_listing)
    assert report.forgotten == [] and calls
    [upload] = stack.queue.receive_all()  # only the upload's own event
    assert parse_body(upload["Body"])[0].created


def test_images_without_a_face_are_reported_and_failed_ones_are_not(stack: Stack, faces_dir: Path) -> None:
    enroll_john(stack, faces_dir, "john0")
    stack.aws.put("models/jim/jim.jpg", (faces_dir / "seed/jim-carrey.jpg").read_bytes())
    stack.drop()  # its enrollment event is lost
    stack.aws.put("models/nobody/blank.jpg", b"not an image")
    assert stack.deliver() == OK  # fails for good: NOT_AN_IMAGE
    report = stack.run()
    assert (report["missing"], report["missing_keys"], report["failed"], report["forgotten"]) == (
        1, ["models/jim/jim.jpg"], 1, 0)


def test_the_local_stack_runs_the_reconciler_on_its_schedule_with_the_enroll_queue(template: dict[str, Any]) -> None:
    from lambdaface.local.spec import stack_spec

    spec = stack_spec(template, bucket="photos")
    rec = spec.scheduled["ReconcileFunction"]
    assert (rec.handler, rec.rate_s, rec.timeout_s) == ("handlers.reconcile.handler", 3600, 900)
    assert rec.environment["LAMBDAFACE_BUCKET"] == "photos"
    assert rec.environment["ENROLL_QUEUE_URL"].endswith("/lambdaface-EnrollQueue")
    assert rec.environment["MAX_RECEIVE_COUNT"] == "5"
