"""Faults through the whole local stack: duplicate deliveries, AWS failing for a while, a message
that always fails, a burst with enrollments and deletions, and SIGTERM under load.

A worker killed with SIGKILL mid-job is tested in test_e2e_recovery.py
(test_a_worker_killed_mid_job_still_gets_the_result): the job still finishes, once.

Faults are injected for real: the fault stack's handlers reach moto through a
support.faults.FaultProxy (`lambdaface local --handler-env AWS_ENDPOINT_URL=<proxy>`), which
answers 503 to the requests a test picks, while the workers keep polling moto directly. boto3 in
the handlers is told not to retry (AWS_MAX_ATTEMPTS=1), so every injected failure reaches the
pipeline and the retries seen are SQS redeliveries.
"""
from __future__ import annotations

import json
import re
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote_plus

import pytest
from support.faults import FaultProxy, FaultRules, dynamodb_call, get_of
from support.images import background, encode
from support.stack import DEAD_LETTER_QUEUES, StackClients, StackProcess, handler_logs, job_lines
from support.waits import wait_until

# The job lease is the function timeout + 5 s: keep the visibility timeout above it.
SHORT = ("--function-timeout", "6", "--visibility-timeout", "12", "--parameter", "MaxReceiveCount=3")  # 3 deliveries: quicker


def event_key(body: str) -> str | None:
    """The key of the (first) S3 event in a message body, None for other messages."""
    records = json.loads(body).get("Records") or [{}]
    return unquote_plus(records[0].get("s3", {}).get("object", {}).get("key", "")) or None


# --- S3 and DynamoDB failing for a while; a message that always fails ----------------------------


@dataclass
class Faulty:
    """A running stack whose handlers go through a FaultProxy, the test's clients, the rules."""

    stack: StackProcess
    aws: StackClients
    faults: FaultRules


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    """A stack whose handlers reach moto through a FaultProxy, with short timeouts.

    The proxy binds its port (any free one) before the stack starts, so that its URL can be in the
    handlers' environment; the stack binds its own (--port 0) and says which; then the proxy
    learns where to forward. No port is chosen by one party and bound by another."""
    with FaultProxy() as proxy:
        handler_env = ("--handler-env", f"AWS_ENDPOINT_URL={proxy.url}", "--handler-env", "AWS_MAX_ATTEMPTS=1")
        with StackProcess(tmp_path_factory.mktemp("faults") / "state", *SHORT, *handler_env, workers=1) as stack:
            proxy.forward_to(stack.endpoint)
            yield Faulty(stack, StackClients(stack), FaultRules(proxy))
            assert stack.stop() == 0, stack.stderr()[-3000:]


def test_dynamodb_failing_for_a_while_is_retried_then_succeeds(faulty: Faulty, faces_dir: Path) -> None:
    stack, aws, faults = faulty.stack, faulty.aws, faulty.faults
    faults.add("dynamodb", dynamodb_call)  # (the handlers' SQS calls are for videos only)
    aws.put("queries/ddb-outage.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    stack.wait_for_line(r"^RecognizeFunction queries/ddb-outage\.jpg: attempt 1 failed, will be retried", timeout=120)
    faults.heal("dynamodb")
    assert faults.count(r"^POST /$") >= 1
    line = stack.wait_for_line(r"^RecognizeFunction queries/ddb-outage\.jpg: succeeded \(", timeout=120)
    assert line.endswith(", attempt 2)"), line
    doc = aws.result("queries/ddb-outage.jpg")
    assert doc["status"] == "succeeded" and len(doc["faces"]) == 1
    [record] = aws.jobs_by_key()[("queries/ddb-outage.jpg", "recognize")]
    assert record["status"] == "succeeded" and record["job_id"] == doc["job_id"]


def test_s3_failing_for_a_while_is_retried_then_succeeds(faulty: Faulty, faces_dir: Path) -> None:
    stack, aws, faults = faulty.stack, faulty.aws, faulty.faults
    faults.add("flaky", get_of("queries/s3-outage.jpg"))
    aws.put("queries/s3-outage.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    stack.wait_for_line(r"^RecognizeFunction queries/s3-outage\.jpg: attempt 1 failed, will be retried", timeout=120)
    faults.heal("flaky")
    line = stack.wait_for_line(r"^RecognizeFunction queries/s3-outage\.jpg: succeeded \(", timeout=120)
    assert line.endswith(", attempt 2)"), line
    assert faults.count(r"^GET .*/queries/s3-outage\.jpg$") == 1
    doc = aws.result("queries/s3-outage.jpg")
    assert doc["status"] == "succeeded"
    [record] = aws.jobs_by_key()[("queries/s3-outage.jpg", "recognize")]
    assert (record["status"], record["attempts"], record["job_id"]) == ("succeeded", 2, doc["job_id"])
    assert record["last_error"]["code"] == "SlowDown"  # what the first attempt ran into


def test_a_message_that_always_fails_ends_in_the_dead_letter_queue(faulty: Faulty, faces_dir: Path) -> None:
    stack, aws, faults = faulty.stack, faulty.aws, faulty.faults
    faults.add("doomed", get_of("queries/doomed.jpg"))
    try:
        aws.put("queries/doomed.jpg", (faces_dir / "seed/john2.jpg").read_bytes())
        stack.wait_for_line(r"^RecognizeFunction queries/doomed\.jpg: attempt 3 failed, goes to the dead-letter queue",
                            timeout=180)
        assert faults.count(r"^GET .*/queries/doomed\.jpg$") == 3  # one per delivery: maxReceiveCount is 3
        # moto moves the message on its next receive after the visibility timeout
        wait_until("the dead-letter queue", lambda: aws.depth("RecognizeDeadLetterQueue") == 1, timeout=60, every=0.5)
    finally:
        faults.heal("doomed")
    dlq = aws.queue_url("RecognizeDeadLetterQueue")
    [message] = aws.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert event_key(message["Body"]) == "queries/doomed.jpg"
    assert aws.depth("RecognizeQueue") == 0

    doc = aws.result("queries/doomed.jpg")
    assert doc["status"] == "failed" and doc["error"]["code"] == "RETRIES_EXHAUSTED", doc
    assert doc["error"]["message"].startswith("3 attempts failed; last: SlowDown"), doc["error"]
    [record] = aws.jobs_by_key()[("queries/doomed.jpg", "recognize")]
    assert (record["status"], record["attempts"], record["error"]) == ("failed", 3, doc["error"])


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
    with StackProcess(state_dir, *LOADED, workers=0) as stack:
        aws = StackClients(stack)
        url = aws.queue_url("RecognizeQueue")
        aws.put("queries/dup.jpg", (faces_dir / "seed/john1.jpg").read_bytes())

        def dup_message() -> dict[str, Any] | None:
            got = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
            return next((m for m in got if "Records" in m["Body"] and event_key(m["Body"]) == "queries/dup.jpg"), None)

        body = wait_until("the notification of queries/dup.jpg", dup_message, timeout=30, every=0.5)["Body"]
        for i, key in enumerate(LOAD):  # the copies go in between, so that they come in different batches
            aws.put(key, (faces_dir / LOAD_PHOTOS[i % len(LOAD_PHOTOS)]).read_bytes())
            if i in (9, 19):
                aws.sqs.send_message(QueueUrl=url, MessageBody=body)
        assert stack.stop() == 0
    saved = json.loads((state_dir / "state.json").read_text())["messages"]["RecognizeQueue"]
    bodies = [m["body"] for m in saved if "Records" in m["body"]]
    assert sorted(map(event_key, bodies)) == sorted(["queries/dup.jpg"] * 3 + LOAD)
    assert bodies.count(body) == 3
    return {"state_dir": state_dir, "body": body}


@pytest.fixture(scope="module")
def interrupted(queued: dict[str, Any]) -> dict[str, Any]:
    """The queued state run by a stack with 2 workers, stopped with SIGTERM once 5 results are in:
    what it saved and said (the restart test goes on from its state directory)."""
    state_dir = queued["state_dir"]
    with StackProcess(state_dir, *LOADED, workers=2) as stack:
        aws = StackClients(stack)
        wait_until("the first results", lambda: len(aws.result_sources()) >= 5, timeout=180, every=0.1)
        assert stack.stop(signal.SIGTERM) == 0
    return {"state_dir": state_dir, "saved": json.loads((state_dir / "state.json").read_text()), "stderr": stack.stderr()}


def test_sigterm_under_load_loses_nothing_in_flight(interrupted: dict[str, Any]) -> None:
    saved = interrupted["saved"]
    done = {o["key"].removeprefix("results/").removesuffix(".json") for o in saved["objects"] if o["key"].endswith(".json")}
    left = {event_key(m["body"]) for m in saved["messages"]["RecognizeQueue"] if "Records" in m["body"]}
    assert left - {"queries/dup.jpg"}, "the stack was stopped with work left to do"
    assert {"queries/dup.jpg", *LOAD} <= done | left, "every upload has its result or its message"
    assert re.search(r"stopped; saved \d+ objects, \d+ items, [1-9]\d* messages", interrupted["stderr"])


def test_after_a_restart_every_upload_has_exactly_one_result(interrupted: dict[str, Any]) -> None:
    state_dir = interrupted["state_dir"]
    with StackProcess(state_dir, *LOADED, workers=1) as stack:
        aws = StackClients(stack)
        keys = ["queries/dup.jpg", *LOAD]
        wait_until("every result", lambda: set(keys) <= set(aws.result_sources()) and aws.idle(), timeout=300, every=0.5)
        assert sorted(aws.result_sources()) == sorted(keys)
        records = aws.jobs_by_key()
        assert sorted(k for k, _ in records) == sorted(keys), "one job per upload"
        for key in keys:
            [record] = records[(key, "recognize")]
            doc = aws.result(key)
            assert doc["status"] == "succeeded" and len(doc["faces"]) == 1, doc
            assert (record["status"], record["job_id"], record["attempts"]) == ("succeeded", doc["job_id"], 1), record
        assert aws.depths(DEAD_LETTER_QUEUES) == {q: 0 for q in DEAD_LETTER_QUEUES}
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


def small_background(faces_dir: Path) -> bytes:
    """The part of obama3.jpg left of his face, small: a real photo without a face."""
    return encode(background(faces_dir).resize((150, 584)), "JPEG", quality=85)


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
    photos = {rel: (faces_dir / rel).read_bytes() for rel in {*ENROLL_PHOTOS, FACE}} | {NO_FACE: small_background(faces_dir)}
    keys = [key for key, _ in uploads]
    deleted = set(deletions.values())
    with StackProcess(
        tmp_path_factory.mktemp("burst") / "state", "--handler-env", "LAMBDAFACE_UPSAMPLE_BELOW=0", workers=2,
        env={"LAMBDAFACE_ENROLL_JITTERS": "1"},  # affordable on 2 cores; passed on to the workers
    ) as stack:
        aws = StackClients(stack)
        for i, (key, rel) in enumerate(uploads):
            aws.put(key, photos[rel])
            if i in deletions:
                aws.delete(deletions[i])

        def forgotten() -> bool:  # the last word on a deleted image: forgotten, or never enrolled
            docs = [aws.maybe_result(k) or {} for k in deleted]
            return all(d.get("kind") == "forget" or (d.get("error") or {}).get("code") == "OBJECT_NOT_FOUND" for d in docs)

        wait_until("500 results", lambda: len(aws.result_sources()) >= BURST and aws.idle(), timeout=900, every=2)
        wait_until("the deletions", lambda: aws.idle() and forgotten(), timeout=120, every=1)

        # 500 results, one per upload, none lost
        assert sorted(aws.result_sources()) == sorted(keys)
        # none duplicated: one job per upload (and one forget per deletion), each run once
        records = aws.jobs_by_key()
        expected = {(k, "enroll" if k.startswith("models/") else "recognize") for k in keys} | {(k, "forget") for k in deleted}
        assert set(records) == expected
        for (key, kind), found in records.items():
            assert len(found) == 1 and found[0]["attempts"] == 1, found
            assert found[0]["status"] in ("succeeded", "failed"), found
            if found[0]["status"] == "failed":  # only an image deleted before its enrollment ran
                assert key in deleted and found[0]["error"]["code"] == "OBJECT_NOT_FOUND", found
        for key, rel in uploads:
            if key.startswith("queries/"):
                doc = aws.result(key)
                assert doc["status"] == "succeeded" and len(doc["faces"]) == (rel == FACE), doc

        # the gallery is exactly what models/ holds
        in_bucket = set(aws.keys("models/"))
        assert in_bucket == {k for k in keys if k.startswith("models/")} - deleted
        gallery = {(f["person"], f["image_key"]) for f in aws.gallery_faces()}
        assert gallery == {(key.split("/")[1], key) for key in in_bucket}
        assert aws.depths(DEAD_LETTER_QUEUES) == {q: 0 for q in DEAD_LETTER_QUEUES}
        # A worker deletes its messages, then reports; the stack prints the reports when its main
        # loop comes round (an autosave of 1000 objects holds it for seconds). Empty queues do not
        # mean every line is out; a stopped stack has printed them all.
        assert stack.stop() == 0
    # one line per job: none lost, no job ran twice
    lines = job_lines(stack.lines, "EnrollFunction|RecognizeFunction")
    printed, expected = Counter(m["key"] for m in lines), Counter(keys + list(deleted))
    assert printed == expected, f"without a line: {expected - printed}; more than one: {printed - expected}"
    assert len(lines) == BURST + len(deleted)
    assert "exited with" not in stack.stderr()
