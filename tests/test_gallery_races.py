"""The three deletion races of issue 12, each reproduced over HTTP against moto's server.

A proxy in front of moto sees every call the handlers make: it fails the k-th write to the gallery
table (503, no SDK retry), or runs another event's handler at the exact moment a race needs it.
The message is then redelivered, as SQS would, and the checks are those a user cares about: the
deleted image's face is in neither the table nor a warm worker's gallery.
(Each test failed on the pre-issue-12 code: run with PYTHONPATH at a copy of it.)
"""
from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import pytest
from support.faults import FaultProxy
from support.lambda_events import batch, context, record, redelivered, s3_event_body
from support.moto import MotoResources, moto_resources

from handlers import enroll
from shared.aws.gallery_table import GalleryTable

WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
_call = threading.local()


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # decoded
    target: str  # DynamoDB operation ("" for S3)
    body: bytes


class HookProxy(FaultProxy):
    """A FaultProxy whose rules see the whole call, with one-shot hooks run before or after one."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.hooks: list[tuple[str, Callable[[Call], bool], Callable[[], None]]] = []

    def forward(self, request: Any) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        call = Call(request.command, unquote(request.path), request.headers.get("X-Amz-Target", "").split(".")[-1], body)
        _call.current = call
        self._run_hooks("before", call)
        if self._should_fail(request.command, request.path):
            return self._answer(request, 503, [], b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
        assert self._target is not None
        upstream = http.client.HTTPConnection(*self._target, timeout=30)
        try:
            upstream.request(request.command, request.path, body=body or None, headers=dict(request.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self._run_hooks("after", call)  # done by moto, not yet seen by the caller
        headers = [(k, v) for k, v in response.getheaders()
                   if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date")]
        if request.command == "HEAD":
            headers.append(("Content-Length", response.getheader("Content-Length") or "0"))
        self._answer(request, response.status, headers, data)

    @staticmethod
    def _answer(request: Any, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        if request.command != "HEAD":
            request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _run_hooks(self, when: str, call: Call) -> None:
        for hook in list(self.hooks):
            if hook[0] == when and hook[1](call):
                self.hooks.remove(hook)
                hook[2]()

    def fail_nth(self, n: int, matches: Callable[[Call], bool]) -> None:
        """Fail the n-th call (from now) that `matches`."""
        seen = {"count": 0}

        def when(method: str, path: str) -> bool:
            if not matches(_call.current):
                return False
            seen["count"] += 1
            return seen["count"] == n

        self.fail(1, when)


def gallery_write(aws: MotoResources) -> Callable[[Call], bool]:
    return lambda call: call.target in WRITES and aws.gallery_table.encode() in call.body


@pytest.fixture
def env(moto_endpoint: str) -> Iterator[tuple[MotoResources, HookProxy]]:
    with moto_resources(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1") as aws:
        proxy = HookProxy(aws.endpoint)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", proxy.url)
            mp.setenv("AWS_MAX_ATTEMPTS", "1")
            yield aws, proxy
        proxy.close()


def event(aws: MotoResources, key: str, sequencer: str, etag: str = "") -> dict[str, Any]:
    """An S3 event on `key` as AWS sends it (sequencer, and an eventTime that agrees with it)."""
    name = "ObjectCreated:Put" if etag else "ObjectRemoved:Delete"
    body = json.loads(s3_event_body(aws.bucket, key, etag, event_name=name, sequencer=sequencer))
    body["Records"][0]["eventTime"] = f"2026-11-28T12:00:{int(sequencer, 16):02d}.000Z"
    return record(json.dumps(body))


def deliver(rec: dict[str, Any], attempts: int = 3) -> None:
    """Deliver one message until the handler takes it (as SQS redelivers), at most `attempts` times."""
    for n in range(1, attempts + 1):
        if enroll.handler(batch(redelivered(rec, n) if n > 1 else rec), context()) == {"batchItemFailures": []}:
            return
    raise AssertionError(f"{rec['messageId']} still failing after {attempts} deliveries")


def table_keys(aws: MotoResources) -> set[str]:
    return {face.image_key for face in GalleryTable(aws.gallery_table).faces()}


def warm_people(aws: MotoResources) -> list[str]:
    """Who a warm worker of this process would match (its cached gallery, brought up to date)."""
    return list(GalleryTable(aws.gallery_table).load_gallery().people)


def test_race1_a_forget_whose_last_step_fails_still_takes_effect(env: tuple[MotoResources, HookProxy], faces_dir: Path) -> None:
    aws, proxy = env
    photo = (faces_dir / "seed/john0.jpg").read_bytes()
    for k in range(1, 6):  # fail the forget's k-th write to the gallery table, then redeliver
        person, key = f"p{k}", f"models/p{k}/john0.jpg"
        etag = aws.put(key, photo)
        deliver(event(aws, key, "01", etag))
        assert person in warm_people(aws)  # a warm worker matches p<k>
        aws.delete(key)
        proxy.fail_nth(k, gallery_write(aws))
        deliver(event(aws, key, "02"))
        assert key not in table_keys(aws)
        assert person not in warm_people(aws), f"failing write {k}: a warm worker still matches the deleted face"
        assert aws.result(key)["kind"] == "forget" and aws.result(key)["removed"] is True


def test_race2_an_image_deleted_while_it_enrolls_never_stays(env: tuple[MotoResources, HookProxy], faces_dir: Path) -> None:
    aws, proxy = env
    photo = (faces_dir / "seed/john0.jpg").read_bytes()
    for k in range(0, 4):  # 0: no failure; k: the enrollment's k-th gallery write after the delete fails
        person, key = f"q{k}", f"models/q{k}/john0.jpg"
        etag = aws.put(key, photo)
        upload, delete = event(aws, key, "01", etag), event(aws, key, "02")

        def delete_now(key: str = key, delete: dict[str, Any] = delete, k: int = k) -> None:
            aws.delete(key)  # the image is deleted while its enrollment runs ...
            deliver(delete)  # ... and its forget finishes first
            if k:
                proxy.fail_nth(k, gallery_write(aws))

        proxy.hooks.append(("before", gallery_write(aws), delete_now))
        deliver(upload)
        assert not proxy.hooks, "the race did not happen"
        assert key not in table_keys(aws), f"failing write {k}: the face outlived its image"
        assert person not in warm_people(aws)


def test_race3_a_stale_forget_cannot_put_a_deleted_face_back(env: tuple[MotoResources, HookProxy], faces_dir: Path) -> None:
    aws, proxy = env
    photo = (faces_dir / "seed/john0.jpg").read_bytes()
    key = "models/r/john0.jpg"
    etag = aws.put(key, photo)
    deliver(event(aws, key, "01", etag))
    aws.delete(key)  # 02
    aws.put(key, photo)  # 03: the same image again
    first_delete, upload_again, second_delete = event(aws, key, "02"), event(aws, key, "03", etag), event(aws, key, "04")

    def delete_again() -> None:
        aws.delete(key)  # 04, and its forget runs to the end ...
        deliver(second_delete)

    # ... right after the stale forget (02) looked at the bucket and saw the image there.
    listing = lambda call: call.method == "GET" and "list-type=2" in call.path and key in call.path  # noqa: E731
    proxy.hooks.append(("after", listing, delete_again))
    deliver(first_delete)
    assert not proxy.hooks, "the race did not happen"
    deliver(upload_again)  # the upload event (03) comes last: its image is gone
    assert key not in table_keys(aws), "a deleted face was put back"
    assert "r" not in warm_people(aws)
