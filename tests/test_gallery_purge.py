"""Coalesced purges (src/shared/aws/gallery_purge.py), against moto's server through the enroll
handler: a burst of forgets writes its results at once (no recognition matches the faces from
then on), sends ONE delayed purge message, and that message publishes one snapshot without any of
the faces and deletes the older ones. A forget that comes while the purge compacts is not lost.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import numpy as np
import pytest
from support.lambda_events import LambdaQueue, batch, record, s3_event_body
from support.moto import MotoResources, moto_resources

from handlers import enroll
from shared.aws import clients, gallery_cache, gallery_purge
from shared.aws.gallery_table import GalleryFace, GalleryTable

DELAY_S = 1


@pytest.fixture
def env(moto_endpoint: str) -> Iterator[tuple[MotoResources, LambdaQueue]]:
    with moto_resources(moto_endpoint) as aws:
        queue = LambdaQueue.create(aws.sqs, f"enroll-{aws.bucket}")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENROLL_QUEUE_URL", queue.url)
            mp.setenv("LAMBDAFACE_GALLERY_PURGE_DELAY_S", str(DELAY_S))
            gallery_cache.forget_cache()
            yield aws, queue
            gallery_cache.forget_cache()


def seeded(aws: MotoResources, n: int) -> GalleryTable:
    """n synthetic faces (p0..p<n-1>), all in the published snapshot."""
    table = GalleryTable(aws.gallery_table)
    vectors = np.random.default_rng(n).normal(size=(n, 128)).astype(np.float32)
    for i, v in enumerate(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)):
        table.put_face(GalleryFace(f"p{i}", f"models/p{i}/x.jpg", v, etag=f"e{i}"))
    gallery_cache.compact(table, aws.bucket)
    return table


def forget(aws: MotoResources, key: str, n: int) -> None:
    """The S3 event of `key`'s deletion, through the enroll handler (the object is gone)."""
    body = json.loads(s3_event_body(aws.bucket, key, event_name="ObjectRemoved:Delete"))
    body["Records"][0]["eventTime"] = f"2099-01-01T00:00:{n:02d}.000Z"  # after the seeding
    response = enroll.handler(batch(record(json.dumps(body))), _context())
    assert response == {"batchItemFailures": []}
    assert aws.result(key)["removed"] is True


def _context() -> Any:
    from support.lambda_events import context

    return context()


def snapshots(aws: MotoResources) -> dict[str, list[str]]:
    """Every snapshot in the bucket: prefix -> the image keys its index.json lists."""
    return {key[: -len("index.json")]: json.loads(aws.get(key))["keys"]
            for key in aws.keys("gallery/snapshots/") if key.endswith("/index.json")}


class Writes:
    """Counts the snapshot writes (index.json PUTs) and snapshot bytes this process sends to S3."""

    def __init__(self) -> None:
        self.snapshots, self.bytes = 0, 0  # index.json PUTs; embeddings.f32 bytes
        clients.client("s3").meta.events.register("before-call.s3", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        key = params.get("url_path", "")
        body = params.get("body", b"")
        if "gallery/snapshots/" in key and model.name in ("PutObject", "UploadPart"):
            if key.endswith("/embeddings.f32"):
                self.bytes += len(body) if isinstance(body, (bytes, bytearray)) else len(body.getvalue())
            self.snapshots += key.endswith("/index.json")


def deliver_purges(queue: LambdaQueue, wait_s: float = 10) -> int:
    """Wait for the delayed purge messages and hand each to the enroll handler; how many came."""
    seen, deadline = 0, time.monotonic() + wait_s
    while time.monotonic() < deadline:
        messages = queue.receive()
        if not messages:
            time.sleep(0.2)
            continue
        assert all(gallery_purge.parse(m["Body"]) for m in messages), messages
        queue.deliver(enroll.handler, messages)
        seen += len(messages)
        deadline = time.monotonic() + DELAY_S + 1  # a re-armed purge comes DELAY_S later
    return seen


def test_a_burst_of_forgets_costs_one_snapshot_rewrite(env: tuple[MotoResources, LambdaQueue]) -> None:
    aws, queue = env
    table = seeded(aws, 30)
    keys = [f"models/p{i}/x.jpg" for i in range(0, 30, 3)]  # 10 forgets
    writes = Writes()
    for n, key in enumerate(keys, start=1):
        forget(aws, key, n)
        # from the moment its result is written, no recognition matches the face ...
        assert gallery_cache.load(table).row_of(key) is None
    # ... the gallery items and every change-log vector of the faces are gone already ...
    items = aws.scan(aws.gallery_table)
    assert not [i for i in items if i["image_key"] in keys and not str(i["person"]).startswith("#")]
    assert not [i for i in items if str(i["person"]).startswith("#log") and i.get("face_key") in keys and "vector" in i]
    # ... but the published snapshot still holds them: the purge is pending, one message for all
    assert writes.snapshots == 0
    [listed] = snapshots(aws).values()
    assert set(keys) <= set(listed)
    assert int(gallery_purge.pending(table)["upto"]) == table.version()
    gallery_cache.forget_cache()  # this process also played a recognition worker above
    assert deliver_purges(queue) == 1
    assert table.ident not in gallery_cache.cached(), "the enroll worker kept the gallery in memory"
    assert writes.snapshots == 1, "the burst cost more than one snapshot rewrite"
    [(prefix, listed)] = snapshots(aws).items()
    assert not set(keys) & set(listed) and len(listed) == 20
    assert gallery_purge.pending(table) is None
    assert writes.bytes == 20 * 128 * 4  # the embeddings of the 20 faces left, once


def forget_p1_after_the_first_compaction(aws: MotoResources, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The dangerous step: forget models/p1/x.jpg right after the purge's first compaction (its
    forced finish), before it clears the pending item; the list names the key once it happened."""
    real_finish = gallery_cache.finish_compaction
    interleaved: list[str] = []

    def finish_then_forget(table_: GalleryTable, force: bool = False) -> None:
        real_finish(table_, force)
        if force and not interleaved:
            interleaved.append("models/p1/x.jpg")
            forget(aws, "models/p1/x.jpg", 2)

    monkeypatch.setattr(gallery_cache, "finish_compaction", finish_then_forget)
    return interleaved


def assert_forgotten_in_no_snapshot(aws: MotoResources) -> None:
    left = {p: sorted({"models/p0/x.jpg", "models/p1/x.jpg"} & set(k)) for p, k in snapshots(aws).items()}
    assert not any(left.values()), f"a forgotten face is still in a snapshot: {left}"


def test_a_forget_during_the_purge_is_purged_too(env: tuple[MotoResources, LambdaQueue],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The dangerous step: a forget raises `upto` after the purge compacted, before it clears the
    pending item. The purge must not clear it: it compacts once more."""
    aws, queue = env
    table = seeded(aws, 6)
    forget(aws, "models/p0/x.jpg", 1)
    interleaved = forget_p1_after_the_first_compaction(aws, monkeypatch)
    assert deliver_purges(queue) == 1
    assert interleaved, "the interleaving did not happen"
    assert_forgotten_in_no_snapshot(aws)
    assert gallery_purge.pending(table) is None


def test_a_lost_purge_message_is_sent_again_by_the_next_forget(env: tuple[MotoResources, LambdaQueue]) -> None:
    aws, queue = env
    table = seeded(aws, 6)
    forget(aws, "models/p0/x.jpg", 1)
    time.sleep(DELAY_S + 0.5)
    assert len(queue.receive_all()) == 1  # the message is lost: received, never handled
    aws.dynamodb.update_item(TableName=table.name, Key={"person": {"S": "#purge"}, "image_key": {"S": "pending"}},
                             UpdateExpression="SET due = :d", ExpressionAttributeValues={":d": {"N": "0"}})
    forget(aws, "models/p1/x.jpg", 2)  # the next forget finds the purge overdue: a new message
    assert deliver_purges(queue) == 1
    assert not {"models/p0/x.jpg", "models/p1/x.jpg"} & {k for keys in snapshots(aws).values() for k in keys}
    assert gallery_purge.pending(table) is None


def test_without_a_queue_the_forget_purges_at_once(moto_endpoint: str) -> None:
    with moto_resources(moto_endpoint) as aws:
        gallery_cache.forget_cache()
        table = seeded(aws, 4)
        forget(aws, "models/p2/x.jpg", 1)
        assert all("models/p2/x.jpg" not in keys for keys in snapshots(aws).values())
        assert gallery_purge.pending(table) is None
        assert gallery_cache.load(table).row_of("models/p2/x.jpg") is None


def test_a_purge_short_of_time_hands_over_to_a_new_message(env: tuple[MotoResources, LambdaQueue],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """As above, but the invocation has no time for a second compaction: instead of running into
    Lambda's timeout (the message would come back only after the visibility timeout), the purge
    re-arms: a new delayed message finishes it."""
    aws, queue = env
    table = seeded(aws, 6)
    forget(aws, "models/p0/x.jpg", 1)
    interleaved = forget_p1_after_the_first_compaction(aws, monkeypatch)
    time.sleep(DELAY_S + 0.5)
    [first] = queue.receive()
    message = gallery_purge.parse(first["Body"])
    assert message is not None
    no_time_left = lambda: 0.0  # noqa: E731 - after the first compaction, not twice its time
    assert gallery_purge.run(table, aws.bucket, queue.url, message.token, DELAY_S, no_time_left) == 1
    assert interleaved, "the interleaving did not happen"
    aws.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=first["ReceiptHandle"])
    assert deliver_purges(queue) == 1  # the re-armed message
    assert_forgotten_in_no_snapshot(aws)
    assert gallery_purge.pending(table) is None
