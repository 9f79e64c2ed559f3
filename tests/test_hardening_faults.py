"""Faults through the whole local stack: duplicate deliveries, AWS failing for a while, a message
that always fails, a burst with enrollments and deletions, and SIGTERM under load.

A worker killed with SIGKILL mid-job is tested in test_e2e_recovery.py
(test_a_worker_killed_mid_job_still_gets_the_result): the job still finishes, once.

Faults are injected for real: the fault stack's handlers reach moto through tests'
pipeline_support.FaultProxy (`lambdaface local --handler-env AWS_ENDPOINT_URL=<proxy>`), which
answers 503 to the requests a test picks, while the workers keep polling moto directly. boto3 in
the handlers is told not to retry (AWS_MAX_ATTEMPTS=1), so every injected failure reaches the
pipeline and the retries seen are SQS redeliveries.
"""
from __future__ import annotations

import io
import json
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, unquote_plus

import pytest
from local_support import LocalStack
from pipeline_support import FaultProxy, free_port

from shared.aws.dynamo import from_item

JOBS_TABLE, GALLERY_TABLE = "lambdaface-JobsTable", "lambdaface-GalleryTable"
QUEUES = ("EnrollQueue", "RecognizeQueue", "VideoQueue")
DEAD_LETTER_QUEUES = ("EnrollDeadLetterQueue", "RecognizeDeadLetterQueue", "VideoDeadLetterQueue")
# The job lease is the function timeout + 5 s: keep the visibility timeout above it.
SHORT = ("--function-timeout", "6", "--visibility-timeout", "12")


# --- helpers -----------------------------------------------------------------------------------


def client(stack: LocalStack, service: str) -> Any:
    """One boto3 client per stack and service (creating one costs more than a call)."""
    cache = stack.__dict__.setdefault("_test_clients", {})
    if service not in cache:
        cache[service] = stack.client(service)
    return cache[service]


def put(stack: LocalStack, key: str, data: bytes) -> None:
    client(stack, "s3").put_object(Bucket=stack.bucket, Key=key, Body=data)


def result(stack: LocalStack, key: str) -> dict[str, Any] | None:
    s3 = client(stack, "s3")
    try:
        body = s3.get_object(Bucket=stack.bucket, Key=f"results/{key}.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def result_keys(stack: LocalStack) -> list[str]:
    """Source keys of every result document in the bucket."""
    pages = client(stack, "s3").get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="results/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [k.removeprefix("results/").removesuffix(".json") for k in keys if k.endswith(".json")]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(every)
    return value


def depth(stack: LocalStack, queue: str) -> int:
    """Messages in a queue: visible, in flight and delayed."""
    sqs = client(stack, "sqs")
    url = sqs.get_queue_url(QueueName=f"lambdaface-{queue}")["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    return sum(int(v) for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].values())


def drained(stack: LocalStack) -> bool:
    return all(depth(stack, q) == 0 for q in QUEUES)


def scan(stack: LocalStack, table: str) -> list[dict[str, Any]]:
    pages = client(stack, "dynamodb").get_paginator("scan").paginate(TableName=table)
    return [from_item(item) for page in pages for item in page["Items"]]


def jobs_by_key(stack: LocalStack) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Job records by (source key, kind)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in scan(stack, JOBS_TABLE):
        out.setdefault((record["key"], record["kind"]), []).append(record)
    return out


def handler_logs(state_dir: Path, function: str) -> list[dict[str, Any]]:
    """The handler's structured log lines (Powertools JSON), across every run of the stack."""
    path = state_dir / "logs" / f"{function}.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


def read(faces: Path, rel: str) -> bytes:
    return (faces / rel).read_bytes()


def event_key(body: str) -> str | None:
    records = json.loads(body).get("Records") or [{}]
    return unquote_plus(records[0].get("s3", {}).get("object", {}).get("key", "")) or None


# --- S3 and DynamoDB failing for a while; a message that always fails ----------------------------


class Faults:
    """Named rules for the FaultProxy: a request fails while any rule matches it."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.rules: dict[str, Callable[[str, str], bool]] = {}
        self._lock = threading.Lock()
        proxy.fail(10**9, self)

    def __call__(self, method: str, path: str) -> bool:
        with self._lock:
            rules = list(self.rules.values())
        return any(rule(method, path) for rule in rules)

    def add(self, name: str, rule: Callable[[str, str], bool]) -> None:
        with self._lock:
            self.rules[name] = rule

    def heal(self, name: str) -> None:
        with self._lock:
            del self.rules[name]

    def count(self, pattern: str) -> int:
        return sum(1 for method, path in self.proxy.injected if re.search(pattern, f"{method} {unquote(path)}"))


def s3_get_of(key: str) -> Callable[[str, str], bool]:
    return lambda method, path: method == "GET" and unquote(path.split("?")[0]).endswith("/" + key)


def dynamodb(method: str, path: str) -> bool:
    return method == "POST" and path == "/"  # DynamoDB's JSON API (the handlers' SQS calls are for videos only)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Faults]]:
    """A stack whose handlers reach moto through a FaultProxy, with short timeouts."""
    # The proxy binds its port first, so the stack's port (chosen next) cannot be the same one.
    proxy = FaultProxy("http://127.0.0.1:0")
    port = free_port()
    proxy.target_port = str(port)
    handler_env = ("--handler-env", f"AWS_ENDPOINT_URL={proxy.url}", "--handler-env", "AWS_MAX_ATTEMPTS=1")
    try:
        with LocalStack(tmp_path_factory.mktemp("faults") / "state", "--port", str(port), *SHORT, *handler_env, workers=1) as s:
            yield s, Faults(proxy)
        assert s.stop() == 0
    finally:
        proxy.close()


def test_dynamodb_failing_for_a_while_is_retried_then_succeeds(faulty: tuple[LocalStack, Faults], faces_dir: Path) -> None:
    stack, faults = faulty
    faults.add("dynamodb", dynamodb)
    put(stack, "queries/ddb-outage.jpg", read(faces_dir, "seed/john1.jpg"))
    stack.wait_for_line(r"^RecognizeFunction queries/ddb-outage\.jpg: attempt 1 failed, will be retried", timeout=120)
    faults.heal("dynamodb")
    assert faults.count(r"^POST /$") >= 1
    line = stack.wait_for_line(r"^RecognizeFunction queries/ddb-outage\.jpg: succeeded \(", timeout=120)
    assert line.endswith(", attempt 2)"), line
    doc = result(stack, "queries/ddb-outage.jpg")
    assert doc and doc["status"] == "succeeded" and len(doc["faces"]) == 1
    [record] = jobs_by_key(stack)[("queries/ddb-outage.jpg", "recognize")]
    assert record["status"] == "succeeded" and record["job_id"] == doc["job_id"]


def test_s3_failing_for_a_while_is_retried_then_succeeds(faulty: tuple[LocalStack, Faults], faces_dir: Path) -> None:
    stack, faults = faulty
    # The next test's message fails on every delivery; it starts now to share the waiting.
    faults.add("doomed", s3_get_of("queries/doomed.jpg"))
    put(stack, "queries/doomed.jpg", read(faces_dir, "seed/john2.jpg"))
    faults.add("flaky", s3_get_of("queries/s3-outage.jpg"))
    put(stack, "queries/s3-outage.jpg", read(faces_dir, "seed/john1.jpg"))
    stack.wait_for_line(r"^RecognizeFunction queries/s3-outage\.jpg: attempt 1 failed, will be retried", timeout=120)
    faults.heal("flaky")
    line = stack.wait_for_line(r"^RecognizeFunction queries/s3-outage\.jpg: succeeded \(", timeout=120)
    assert line.endswith(", attempt 2)"), line
    assert faults.count(r"^GET .*/queries/s3-outage\.jpg$") == 1
    doc = result(stack, "queries/s3-outage.jpg")
    assert doc and doc["status"] == "succeeded"
    [record] = jobs_by_key(stack)[("queries/s3-outage.jpg", "recognize")]
    assert (record["status"], record["attempts"], record["job_id"]) == ("succeeded", 2, doc["job_id"])
    assert record["last_error"]["code"] == "SlowDown"  # what the first attempt ran into


def test_a_message_that_always_fails_ends_in_the_dead_letter_queue(faulty: tuple[LocalStack, Faults]) -> None:
    stack, faults = faulty
    stack.wait_for_line(r"^RecognizeFunction queries/doomed\.jpg: attempt 3 failed, goes to the dead-letter queue", timeout=180)
    assert faults.count(r"^GET .*/queries/doomed\.jpg$") == 3  # one per delivery: maxReceiveCount is 3
    # moto moves the message on its next receive after the visibility timeout
    wait_for("the dead-letter queue", lambda: depth(stack, "RecognizeDeadLetterQueue") == 1, timeout=60)
    sqs = client(stack, "sqs")
    dlq = sqs.get_queue_url(QueueName="lambdaface-RecognizeDeadLetterQueue")["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert event_key(message["Body"]) == "queries/doomed.jpg"
    assert depth(stack, "RecognizeQueue") == 0

    doc = result(stack, "queries/doomed.jpg")
    assert doc and doc["status"] == "failed" and doc["error"]["code"] == "RETRIES_EXHAUSTED", doc
    assert doc["error"]["message"].startswith("3 attempts failed; last: SlowDown"), doc["error"]
    [record] = jobs_by_key(stack)[("queries/doomed.jpg", "recognize")]
    assert (record["status"], record["attempts"], record["error"]) == ("failed", 3, doc["error"])
    faults.heal("doomed")


# --- the same event three times, then SIGTERM under load and a restart ------------------------------

LOAD = [f"queries/load/{i:02d}.jpg" for i in range(30)]
LOAD_PHOTOS = ("people/obama/obama_small.jpg", "seed/jim-carrey.jpg", "people/obama/obama_240p.jpg")
# Long enough for a batch of five on a busy 2-core machine; the visibility timeout stays above the lease.
LOADED = ("--function-timeout", "20", "--visibility-timeout", "30")


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict[str, Any]:
    """A stack without workers: queries/dup.jpg's notification is queued three times (the same
    body), among 30 more uploads; then the stack stops and saves them all."""
    state_dir = tmp_path_factory.mktemp("sigterm") / "state"
    with LocalStack(state_dir, *LOADED, workers=0) as stack:
        sqs = client(stack, "sqs")
        url = sqs.get_queue_url(QueueName="lambdaface-RecognizeQueue")["QueueUrl"]
        put(stack, "queries/dup.jpg", read(faces_dir, "seed/john1.jpg"))

        def dup_message() -> dict[str, Any] | None:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
            return next((m for m in got if "Records" in m["Body"] and event_key(m["Body"]) == "queries/dup.jpg"), None)

        body = wait_for("the notification of queries/dup.jpg", dup_message, timeout=30)["Body"]
        for i, key in enumerate(LOAD):  # the copies go in between, so that they come in different batches
            put(stack, key, read(faces_dir, LOAD_PHOTOS[i % len(LOAD_PHOTOS)]))
            if i in (9, 19):
                sqs.send_message(QueueUrl=url, MessageBody=body)
        assert stack.stop() == 0
    saved = json.loads((state_dir / "state.json").read_text())["messages"]["RecognizeQueue"]
    bodies = [m["body"] for m in saved if "Records" in m["body"]]
    assert sorted(map(event_key, bodies)) == sorted(["queries/dup.jpg"] * 3 + LOAD)
    assert bodies.count(body) == 3
    return {"state_dir": state_dir, "body": body}


def test_sigterm_under_load_loses_nothing_in_flight(queued: dict[str, Any]) -> None:
    state_dir = queued["state_dir"]
    with LocalStack(state_dir, *LOADED, workers=2) as stack:
        wait_for("the first results", lambda: len(result_keys(stack)) >= 5, timeout=180, every=0.1)
        assert stack.stop(signal.SIGTERM) == 0
    saved = json.loads((state_dir / "state.json").read_text())
    done = {o["key"].removeprefix("results/").removesuffix(".json") for o in saved["objects"] if o["key"].endswith(".json")}
    left = {event_key(m["body"]) for m in saved["messages"]["RecognizeQueue"] if "Records" in m["body"]}
    assert left - {"queries/dup.jpg"}, "the stack was stopped with work left to do"
    assert {"queries/dup.jpg", *LOAD} <= done | left, "every upload has its result or its message"
    assert re.search(r"stopped; saved \d+ objects, \d+ items, [1-9]\d* messages", stack.stderr())


def test_after_a_restart_every_upload_has_exactly_one_result(queued: dict[str, Any]) -> None:
    state_dir = queued["state_dir"]
    with LocalStack(state_dir, *LOADED, workers=1) as stack:
        keys = ["queries/dup.jpg", *LOAD]
        wait_for("every result", lambda: set(keys) <= set(result_keys(stack)) and drained(stack), timeout=300)
        assert sorted(result_keys(stack)) == sorted(keys)
        records = jobs_by_key(stack)
        assert sorted(k for k, _ in records) == sorted(keys), "one job per upload"
        for key in keys:
            [record] = records[(key, "recognize")]
            doc = result(stack, key)
            assert doc and doc["status"] == "succeeded" and len(doc["faces"]) == 1, doc
            assert (record["status"], record["job_id"], record["attempts"]) == ("succeeded", doc["job_id"], 1), record
        assert all(depth(stack, q) == 0 for q in DEAD_LETTER_QUEUES)
        assert stack.stop() == 0
    # The same event, delivered three times: the handler ran its job once and acknowledged the rest.
    [dup] = records[("queries/dup.jpg", "recognize")]
    logs = [line for line in handler_logs(state_dir, "RecognizeFunction") if line.get("job_id") == dup["job_id"]]
    assert [line["message"] for line in logs].count("job started") == 1, logs
    acknowledged = [line for line in logs if "already finished" in line["message"]]
    assert len(acknowledged) >= 2, logs  # (a copy that came while the job ran was retried, then acknowledged)


# --- a burst with enrollments and deletions -----------------------------------------------------

BURST = 500
# Faces of 100+ pixels, found without upsampling; a third of the queries have one, the rest are a
# photo's background (no face): the burst is about accounting, so the engine's share is kept small.
ENROLL_PHOTOS = ("seed/john0.jpg", "seed/jim-carrey.jpg", "people/obama/obama_small.jpg", "people/kit_harington/kit2.jpg")
FACE, NO_FACE = "people/obama/obama_small.jpg", "background"


def background(faces: Path) -> bytes:
    """The part of obama3.jpg left of his face, small: a real photo without a face."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(faces / "people/obama/obama3.jpg")).convert("RGB")
    buffer = io.BytesIO()
    image.crop((0, 0, 600, 2333)).resize((150, 584)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def burst_plan() -> tuple[list[tuple[str, str]], dict[int, str]]:
    """500 uploads, one in ten an enrollment (of 12 people), and after which upload which earlier
    enrollment gets deleted (17 of them, one right after its own upload)."""
    uploads, enrolled, deletions = [], [], {}
    for i in range(BURST):
        if i % 10 == 3:
            key = f"models/person{len(enrolled) % 12:02d}/face{i:03d}.jpg"
            uploads.append((key, ENROLL_PHOTOS[len(enrolled) % len(ENROLL_PHOTOS)]))
            enrolled.append(key)
        else:
            uploads.append((f"queries/burst/{i:03d}.jpg", FACE if i % 3 == 0 else NO_FACE))
        if i % 30 == 29:
            deletions[i] = enrolled[len(enrolled) // 2]  # somewhere in the middle: done or still queued
    deletions[3] = uploads[3][0]  # the first enrollment, deleted as soon as it is uploaded
    return uploads, deletions


def test_a_burst_with_enrollments_and_deletions_loses_and_duplicates_nothing(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path
) -> None:
    uploads, deletions = burst_plan()
    assert len(uploads) == BURST and len(set(deletions.values())) == len(deletions) >= 15
    photos = {rel: read(faces_dir, rel) for rel in {*ENROLL_PHOTOS, FACE}} | {NO_FACE: background(faces_dir)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMBDAFACE_ENROLL_JITTERS", "1")  # affordable on 2 cores; passed on to the workers
        stack = LocalStack(
            tmp_path_factory.mktemp("burst") / "state", "--handler-env", "LAMBDAFACE_UPSAMPLE_BELOW=0", workers=2
        )
    with stack:
        s3 = client(stack, "s3")
        for i, (key, rel) in enumerate(uploads):
            s3.put_object(Bucket=stack.bucket, Key=key, Body=photos[rel])
            if i in deletions:
                s3.delete_object(Bucket=stack.bucket, Key=deletions[i])
        keys = [key for key, _ in uploads]
        deleted = set(deletions.values())

        def forgotten() -> bool:  # the last word on a deleted image: forgotten, or never enrolled
            docs = [result(stack, k) or {} for k in deleted]
            return all(d.get("kind") == "forget" or (d.get("error") or {}).get("code") == "OBJECT_NOT_FOUND" for d in docs)

        wait_for("500 results", lambda: len(result_keys(stack)) >= BURST and drained(stack), timeout=900, every=2)
        wait_for("the deletions", lambda: drained(stack) and forgotten(), timeout=120, every=1)

        # 500 results, one per upload, none lost
        assert sorted(result_keys(stack)) == sorted(keys)
        # none duplicated: one job per upload (and one forget per deletion), each run once
        records = jobs_by_key(stack)
        expected = {(k, "enroll" if k.startswith("models/") else "recognize") for k in keys} | {(k, "forget") for k in deleted}
        assert set(records) == expected
        for (key, kind), found in records.items():
            assert len(found) == 1 and found[0]["attempts"] == 1, found
            assert found[0]["status"] in ("succeeded", "failed"), found
            if found[0]["status"] == "failed":  # only an image deleted before its enrollment ran
                assert key in deleted and found[0]["error"]["code"] == "OBJECT_NOT_FOUND", found
        for key, rel in uploads:
            if key.startswith("queries/"):
                doc = result(stack, key)
                assert doc["status"] == "succeeded" and len(doc["faces"]) == (rel == FACE), doc
        lines = [line for line in stack.lines if re.match(r"^(Enroll|Recognize)Function ", line)]
        assert len(lines) == BURST + len(deleted), "one line per job, no job ran twice"

        # the gallery is exactly what models/ holds
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="models/")
        in_bucket = {o["Key"] for page in pages for o in page.get("Contents", [])}
        assert in_bucket == {k for k in keys if k.startswith("models/")} - deleted
        gallery = {(f["person"], f["image_key"]) for f in scan(stack, GALLERY_TABLE) if f["person"] != "#meta"}
        assert gallery == {(key.split("/")[1], key) for key in in_bucket}
        assert all(depth(stack, q) == 0 for q in DEAD_LETTER_QUEUES)
        assert "exited with" not in stack.stderr()
    assert stack.stop() == 0
