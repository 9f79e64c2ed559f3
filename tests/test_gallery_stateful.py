"""Random interleavings (seeded) of uploads, re-uploads, deletes, late and repeated deliveries and
injected DynamoDB/S3 failures, through moto's real S3 -> SQS notifications; then the queues are
drained and the gallery must be exactly what `models/` holds, by ETag.

Throughout, every forget whose image is still gone when its result is written is followed by a
recognition-side check: a warm worker's gallery must not hold that face any more. Compaction runs
every 4 changes here, so snapshots, their replacement and the log trimming are exercised too.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.lambda_events import LambdaQueue, batch, context, record
from support.moto import MotoResources, moto_resources
from test_gallery_races import HookProxy, gallery_write

from handlers import enroll
from shared.aws import gallery_cache
from shared.aws.gallery_table import GalleryTable
from shared.engine.matching import identify

KEYS = [f"models/{person}/{name}.jpg" for person in ("ann", "bob") for name in ("a", "b")]
PHOTOS = ["seed/john0.jpg", "seed/jim-carrey.jpg", "people/obama/obama.jpg", "people/biden/biden.jpg"]
STEPS = 45


@pytest.fixture
def world(moto_endpoint: str) -> Iterator[tuple[MotoResources, HookProxy, LambdaQueue]]:
    settings = {"LAMBDAFACE_ENROLL_JITTERS": "1", "LAMBDAFACE_GALLERY_COMPACT_EVERY": "4", "MAX_RECEIVE_COUNT": "1000"}
    with moto_resources(moto_endpoint, **settings) as aws:
        queue = LambdaQueue.create(aws.sqs, f"{aws.bucket}-enroll", VisibilityTimeout="0")
        aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue.arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "models/"}]}}}]})
        proxy = HookProxy(aws.endpoint)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", proxy.url)  # the handlers' calls only; the test's go to moto
            mp.setenv("AWS_MAX_ATTEMPTS", "1")
            gallery_cache.forget_cache()
            yield aws, proxy, queue
        proxy.close()


class Run:
    """One seeded run: the bucket, the queue, what was delivered, and the checks."""

    def __init__(self, aws: MotoResources, proxy: HookProxy, queue: LambdaQueue, faces_dir: Path, seed: int) -> None:
        self.aws, self.proxy, self.queue, self.rng = aws, proxy, queue, random.Random(seed)
        self.photos = [(faces_dir / rel).read_bytes() for rel in PHOTOS]
        self.stash: list[str] = []  # bodies delivered once, to deliver again later (late duplicates)
        self.checked_forgets = 0

    def step(self) -> None:
        action = self.rng.choices(["upload", "delete", "deliver", "late"], weights=[3, 2, 4, 1])[0]
        key = self.rng.choice(KEYS)
        if action == "upload":
            self.aws.put(key, self.rng.choice(self.photos))
        elif action == "delete":
            self.aws.delete(key)
        elif action == "deliver":
            messages = self.queue.receive(self.rng.randint(1, 3))
            self.rng.shuffle(messages)
            for message in messages:
                self.deliver(message["Body"], message)
        elif self.stash:
            self.deliver(self.stash.pop(self.rng.randrange(len(self.stash))))

    def deliver(self, body: str, message: dict[str, Any] | None = None) -> None:
        """One delivery, maybe with one injected failure; a success is deleted from the queue."""
        roll = self.rng.random()
        if roll < 0.15:
            self.proxy.fail_nth(self.rng.randint(1, 4), gallery_write(self.aws))
        elif roll < 0.25:
            self.proxy.fail_nth(1, lambda call: call.target == "" and "/models/" in call.path)  # an S3 call
        response = enroll.handler(batch(record(body)), context())
        self.proxy.fail(0, lambda method, path: False)
        if response["batchItemFailures"]:
            return  # visible again at once (visibility timeout 0), as a redelivery
        if message is not None:
            self.queue.sqs.delete_message(QueueUrl=self.queue.url, ReceiptHandle=message["ReceiptHandle"])
        if self.rng.random() < 0.2:
            self.stash.append(body)
        self.check_forget(body)

    def check_forget(self, body: str) -> None:
        """After a forget's result is written, while its image is still gone, no recognition
        matches its face."""
        records = json.loads(body).get("Records", [])
        if not records or not records[0]["eventName"].startswith("ObjectRemoved"):
            return
        key = records[0]["s3"]["object"]["key"].replace("%2F", "/")
        if key in self.aws.keys("models/"):
            return
        gallery = gallery_cache.load(GalleryTable(self.aws.gallery_table))
        assert gallery.row_of(key) is None, f"{key}: forgotten, but a warm worker still holds its face"
        self.checked_forgets += 1

    def drain(self) -> None:
        for _ in range(500):
            messages = self.queue.receive(10)
            if not messages:
                if not self.stash:
                    return
                self.deliver(self.stash.pop())
                continue
            for message in messages:
                self.deliver(message["Body"], message)
        raise AssertionError("the queue did not drain")


def expected(aws: MotoResources) -> dict[str, str]:
    return {key: aws.etag(key) for key in aws.keys("models/")}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_interleavings_leave_the_gallery_equal_to_the_bucket(world: Any, faces_dir: Path, seed: int) -> None:
    aws, proxy, queue = world
    run = Run(aws, proxy, queue, faces_dir, seed)
    for _ in range(STEPS):
        run.step()
    run.drain()
    want = expected(aws)
    table = GalleryTable(aws.gallery_table)
    assert {f.image_key: f.etag for f in table.faces()} == want
    warm = gallery_cache.load(table)
    assert sorted(k for k in warm.keys if k) == sorted(want)
    gallery_cache.forget_cache()
    cold = gallery_cache.load(table)  # a new worker: the snapshot, then the log
    assert sorted(k for k in cold.keys if k) == sorted(want)
    for key, etag in want.items():  # every face is found at distance 0, under a person enrolled with that photo
        [match] = identify(cold.embeddings[cold.row_of(key)], cold, 0.6, 1)
        same_photo = {k.split("/")[1] for k, e in want.items() if e == etag}
        assert match.person in same_photo and match.distance is not None and match.distance < 1e-3
    assert run.checked_forgets > 0
    assert_no_stale_copies(aws, table, want)


def assert_no_stale_copies(aws: MotoResources, table: GalleryTable, live: dict[str, str]) -> None:
    """Embeddings exist only for live faces: in the log (one entry per live face at most, none
    for a deleted one) and in S3 (one snapshot, none older)."""
    items = aws.scan(aws.gallery_table)
    with_vector = [i for i in items if i["person"] == "#log" and "vector" in i]
    assert {i["face_key"] for i in with_vector} <= set(live)
    assert len(with_vector) == len({i["face_key"] for i in with_vector})
    snapshots = {k.rsplit("/", 1)[0] for k in aws.keys("gallery/snapshots/")}
    assert len(snapshots) <= 1, snapshots
