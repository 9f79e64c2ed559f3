"""An hour-and-a-half video's bookkeeping, without decoding: a plan of 2,000 segments through the real
jobs table, video queue and bucket on moto's server. The fan-out is resumed after a failure halfway;
every segment is counted (some twice, in random order), the job record stays small, the writes per
segment stay constant, and exactly one merge writes the result from the 2,000 partials."""
from __future__ import annotations

import base64
import json
import random
import threading
from collections import Counter
from typing import Any, Iterator

import pytest
from support.faults import FaultProxy
from support.lambda_events import OK, LambdaQueue, batch, context, record
from support.moto import MotoResources, moto_resources

from handlers import video as video_handler
from shared.aws import s3
from shared.aws.clients import client
from shared.aws.jobs_table import JobBusy, JobDone, JobSpec
from shared.aws.video_jobs_table import VideoJobsTable, chunk_item_id
from shared.config import current_config
from shared.engine.video import VideoInfo
from shared.pipeline import keys
from shared.pipeline.video import SEND_STEP, Step, plan_message, segment_bounds

FPS, FRAMES = 10.0, 60_000  # 6,000 s: 2,000 segments of 3 s
SEGMENT_S, SAMPLE_FPS = 3.0, 1.0
SEGMENTS = 2_000
ALICE, BOB = range(100, 200), range(1_500, 2_000)  # segments where each is seen (300-600 s, 4500-6000 s)


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: names plus values (numbers counted as their digits)."""
    def size(value: dict[str, Any]) -> int:
        ((kind, v),) = value.items()
        if kind == "S":
            return len(v.encode())
        if kind == "N":
            return (len(v.strip("-").replace(".", "")) + 1) // 2 + 1
        if kind == "B":
            return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
        if kind == "SS":
            return sum(len(s.encode()) for s in v)
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + size(x) for k, x in v.items())
        if kind == "L":
            return 3 + sum(size(x) + 1 for x in v)
        raise AssertionError(kind)
    return sum(len(name.encode()) + size(value) for name, value in item.items())


class Long:
    """A video job handed off by recognize and planned, in fresh resources, with the video queue."""

    def __init__(self, aws: MotoResources, queue: LambdaQueue) -> None:
        self.aws, self.queue = aws, queue
        self.table = VideoJobsTable(aws.jobs_table)
        self.key, self.job_id = "queries/long.mp4", "0123456789abcdef0123456789abcdef"
        self.etag = aws.put(self.key, b"\x00\x00\x00\x18ftypmp42" + bytes(64))
        self.table.claim(JobSpec(self.job_id, "recognize", aws.bucket, self.key, self.etag), "recognize-1", 60)
        self.table.hand_off(self.job_id, "recognize-1", {"video_started": 1.0, "event_time": "2026-11-28T00:00:00.000Z",
                                                         "source_etag": self.etag})
        self.bounds = segment_bounds(VideoInfo(FPS, FRAMES, 640, 360), SEGMENT_S, SAMPLE_FPS)
        self.table.plan(self.job_id, {  # what plan records after probing (probing is tested on real videos)
            "video": {"fps": FPS, "frames": FRAMES, "width": 640, "height": 360}, "size": 10**9,
            "segment_s": SEGMENT_S, "sample_fps": SAMPLE_FPS, "segments_total": len(self.bounds),
            "chunk_size": 100, "segments_sent": 0, "plan_ms": {"probe": 1.0},
        })

    def raw(self, item_id: str | None = None) -> dict[str, Any]:
        """An item of the jobs table as stored (the job record by default)."""
        return client("dynamodb").get_item(TableName=self.aws.jobs_table, Key={"job_id": {"S": item_id or self.job_id}},
                                           ConsistentRead=True)["Item"]

    def plan_event(self, receive_count: int) -> dict[str, Any]:
        body = json.dumps(plan_message(self.job_id, self.aws.bucket, self.key, self.etag, "2026-11-28T00:00:00.000Z"))
        return batch(record(body, receive_count, arn=self.queue.arn))

    def store_partial(self, index: int) -> None:
        """What segment `index` stores: its sampled frames, alice and bob where ALICE and BOB say."""
        first, end = self.bounds[index]
        people = (["alice"] if index in ALICE else []) + (["bob"] if index in BOB else [])
        frames = [{"t": round(f / FPS, 3), "faces": [{"box": {"left": 1, "top": 1, "width": 9, "height": 9},
                                                      "person": p, "distance": 0.3} for p in people]}
                  for f in range(first, end, int(FPS / SAMPLE_FPS))]
        s3.put_json(self.aws.bucket, keys.partial_key(self.job_id, index), {
            "index": index, "first": first, "end": end, "frames_expected": len(frames), "frames": frames,
            "reads": {"bytes": 0, "requests": 0}, "timings_ms": {"total": 1.0}})


@pytest.fixture
def long(moto_endpoint: str) -> Iterator[Long]:
    with moto_resources(moto_endpoint) as aws:
        queue = LambdaQueue.create(aws.sqs, f"{aws.bucket}-video", VisibilityTimeout="600")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("VIDEO_QUEUE_URL", queue.url)
            yield Long(aws, queue)


class Drain:
    """Lambda's pollers, in short: a thread that receives and deletes what the plan sends, keeping
    the bodies (moto's SQS slows down as a queue grows; a drained queue stays short, as on AWS)."""

    def __init__(self, queue: LambdaQueue) -> None:
        self.queue, self.bodies = queue, []  # type: ignore[var-annotated]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sqs = self.queue.sqs
        while True:
            got = sqs.receive_message(QueueUrl=self.queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not got and self.stopping.is_set():
                return
            if got:
                self.bodies += [json.loads(m["Body"]) for m in got]
                sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)])

    def __enter__(self) -> "Drain":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.thread.join(120)


class Calls:
    """The AWS calls this process makes, seen through botocore's own events on the real clients."""

    SERVICES = ("dynamodb", "sqs", "s3")

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def __enter__(self) -> "Calls":
        for service in self.SERVICES:
            client(service).meta.events.register(f"provide-client-params.{service}.*", self._params)
        return self

    def __exit__(self, *exc: Any) -> None:
        for service in self.SERVICES:
            client(service).meta.events.unregister(f"provide-client-params.{service}.*", self._params)

    def count(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)


def test_two_thousand_segments_fan_out_in_batches_and_resume(long: Long, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(long.bounds) == SEGMENTS
    proxy = FaultProxy(long.aws.endpoint)  # between the video function and SQS only
    seen = []

    def the_57th_request(method: str, path: str) -> bool:
        seen.append(path)
        return len(seen) == 57

    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        proxy.fail(1, the_57th_request)
        with Drain(long.queue) as drain:
            with Calls() as calls:
                assert video_handler.handler(long.plan_event(1), context(600)) != OK  # failed halfway: it comes back
            assert calls.count()["SendMessageBatch"] == 57 and len(proxy.injected) == 1
            checkpoint = int(long.table.get(long.job_id)["segments_sent"])
            assert checkpoint == 500  # 56 batches went out; checkpoints every SEND_STEP messages
            with Calls() as calls:
                assert video_handler.handler(long.plan_event(2), context(600)) == OK  # resumes at the checkpoint
            assert calls.count()["SendMessageBatch"] == (SEGMENTS - checkpoint) // 10
            assert calls.count()["UpdateItem"] == (SEGMENTS - checkpoint) // SEND_STEP
            with Calls() as calls:
                assert video_handler.handler(long.plan_event(3), context(600)) == OK
            assert calls.count()["SendMessageBatch"] == 0  # all sent: nothing is sent again
    finally:
        proxy.close()
    bodies = drain.bodies
    indices = Counter(b["index"] for b in bodies)
    assert set(indices) == set(range(SEGMENTS))
    assert sum(indices.values()) - SEGMENTS == 60 < SEND_STEP  # sent after the checkpoint, before the failure
    body = next(b for b in bodies if b["index"] == 1234)
    assert [body["first"], body["end"], body["count"], body["size"]] == [*long.bounds[1234], SEGMENTS, 10**9]
    job = long.table.get(long.job_id)
    assert job["segments_sent"] == SEGMENTS and "segment_bounds" not in job
    assert item_bytes(long.raw()) < 1024


def test_segments_count_with_constant_writes_and_one_merge(long: Long) -> None:
    record = long.table.get(long.job_id)
    order = list(range(SEGMENTS))
    rng = random.Random(13)
    rng.shuffle(order)
    again = rng.sample(order[:-1], 150)  # redelivered, some before and some after they were counted
    deliveries = order[:-1] + again
    rng.shuffle(deliveries)
    deliveries.append(order[-1])
    sizes, complete = [], []
    with Calls() as calls:
        for n, index in enumerate(deliveries):
            if not long.table.segment_is_done(record, index):
                long.store_partial(index)
            if long.table.segment_done(record, index):
                complete.append(n)
            if n % 250 == 0:
                sizes.append(item_bytes(long.raw()))
    sizes.append(item_bytes(long.raw()))
    assert complete == [len(deliveries) - 1]  # only the update that completes the last chunk
    chunks = SEGMENTS // 100
    updates = [p["Key"]["job_id"]["S"] for name, p in calls.calls if name == "UpdateItem"]
    job_writes = updates.count(long.job_id)
    assert len(updates) - job_writes == len(deliveries)  # one chunk item write per delivery
    # One job write per chunk, plus one per redelivery that finds its chunk complete (it repeats the ADD).
    assert chunks <= job_writes <= chunks + len(again)
    assert len(updates) / len(deliveries) < 1.1
    chunk_reads = [p for name, p in calls.calls if name == "GetItem" and p["Key"]["job_id"]["S"] != long.job_id]
    assert len(chunk_reads) == len(deliveries) and calls.count()["PutObject"] == SEGMENTS  # none redone
    assert max(sizes) < 2048 and max(sizes) - min(sizes) < 600, sizes  # a few hundred bytes, whatever the count
    chunk_sizes = [item_bytes(long.raw(chunk_item_id(long.job_id, c))) for c in range(chunks)]
    assert max(chunk_sizes) < 1024, chunk_sizes  # one write unit per segment

    message = {"type": "segment", "job_id": long.job_id, "bucket": long.aws.bucket, "key": long.key, "etag": long.etag,
               "index": order[-1], "count": SEGMENTS, "first": 0, "end": 1, "video": record["video"],
               "sample_fps": SAMPLE_FPS}
    Step(message, current_config(), context(), 1).merge()
    refused = []
    for _ in range(2):  # later deliveries that also saw every chunk complete
        with pytest.raises((JobDone, JobBusy)) as caught:
            Step(message, current_config(), context(), 2).merge()
        refused.append(caught.type.__name__)
    assert refused == ["JobDone", "JobDone"]
    with pytest.raises(JobDone):
        long.table.segment_done(record, order[-1])

    result = long.aws.result(long.key)
    assert result["status"] == "succeeded" and result["segments"] == SEGMENTS
    assert result["frames_sampled"] == len(result["frames"]) == FRAMES // 10
    assert result["duration_s"] == 6000.0 and result["people"] == ["alice", "bob"]
    assert result["appearances"] == [
        {"person": "alice", "intervals": [[300.0, 600.0]], "seconds": 300.0, "first_s": 300.0, "last_s": 600.0},
        {"person": "bob", "intervals": [[4500.0, 6000.0]], "seconds": 1500.0, "first_s": 4500.0, "last_s": 6000.0},
    ]
    job = long.table.get(long.job_id)
    assert job["status"] == "succeeded" and len(job["chunks_done"]) == chunks
    assert item_bytes(long.raw()) < 2048
