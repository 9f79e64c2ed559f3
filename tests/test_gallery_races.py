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
from shared.aws import gallery_cache
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
    return list(gallery_cache.load(GalleryTable(aws.gallery_table)).people)


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


def snapshot_keys(aws: MotoResources) -> dict[str, list[str]]:
    """Every snapshot under gallery/snapshots/ (prefix -> the image keys its index.json lists)."""
    found: dict[str, list[str]] = {}
    for key in aws.keys("gallery/snapshots/"):
        if key.endswith("/index.json"):
            found[key[: -len("index.json")]] = json.loads(aws.get(key))["keys"]
    return found


def _forget_in_a_worker(rec: dict[str, Any], done: Any) -> None:
    """A second enroll worker (a process of its own, as a Lambda environment): one forget."""
    from shared.aws import clients

    clients.reset()  # the parent's connections are not this process's
    try:
        ok = enroll.handler(batch(rec), context()) == {"batchItemFailures": []}
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        ok = False
        print(f"worker failed: {exc!r}", flush=True)
    done.put(ok)


def test_race4_racing_compactions_leave_no_forgotten_face_in_s3(moto_endpoint: str, faces_dir: Path) -> None:
    """Two workers forget two faces at once; each compacts (a snapshot after every change). Worker
    X publishes its snapshot (change n: still holding worker Y's face) while Y waits at its
    publish step with change n+1; then Y publishes. Y lost the race to an OLDER snapshot: its
    face must still leave S3 (issue 20, item 1)."""
    import multiprocessing

    with moto_resources(moto_endpoint, LAMBDAFACE_ENROLL_JITTERS="1", LAMBDAFACE_GALLERY_COMPACT_EVERY="1") as aws:
        proxy = HookProxy(aws.endpoint)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("AWS_ENDPOINT_URL", proxy.url)
                photo = (faces_dir / "seed/john0.jpg").read_bytes()
                keys = {"x": "models/x/john0.jpg", "y": "models/y/john0.jpg"}
                for n, key in enumerate(keys.values(), start=1):
                    deliver(event(aws, key, f"{n:02d}", aws.put(key, photo)))
                assert set(next(iter(snapshot_keys(aws).values()))) == set(keys.values())

                # The gate: every publish of a new snapshot (a conditional PutItem of the pointer
                # that marks it dirty) waits at the proxy until the test lets it through.
                arrived: dict[str, threading.Event] = {w: threading.Event() for w in keys}
                release: dict[str, threading.Event] = {w: threading.Event() for w in keys}
                passed: dict[str, threading.Event] = {w: threading.Event() for w in keys}
                order: list[str] = []

                def is_publish(call: Call) -> bool:
                    if call.target != "PutItem" or aws.gallery_table.encode() not in call.body:
                        return False
                    item = json.loads(call.body)["Item"]
                    return item["person"]["S"].startswith("#snapshot") and item.get("dirty", {}).get("BOOL") is True

                def gate(when: str) -> Callable[[Call], None]:
                    def run(call: Call) -> None:
                        if not is_publish(call):
                            return
                        if when == "after":
                            if getattr(_call, "worker", None):
                                passed[_call.worker].set()
                            return
                        waiting = [w for w in order if not arrived[w].is_set()]
                        _call.worker = waiting[0] if waiting else None  # each worker's first publish only
                        if _call.worker:
                            arrived[_call.worker].set()
                            assert release[_call.worker].wait(60), "the test never released the publish"
                    return run

                gates = {"before": gate("before"), "after": gate("after")}
                proxy._run_hooks = lambda when, call: gates[when](call)  # type: ignore[method-assign]

                ctx = multiprocessing.get_context("fork")
                done = ctx.Queue()
                workers = {}
                for worker in ("x", "y"):  # x applies its forget (change 3) and reaches publish first
                    aws.delete(keys[worker])
                    order.append(worker)
                    seq = "03" if worker == "x" else "04"
                    workers[worker] = ctx.Process(target=_forget_in_a_worker, args=(event(aws, keys[worker], seq), done))
                    workers[worker].start()
                    assert arrived[worker].wait(60), f"worker {worker} never reached its publish"
                release["x"].set()  # the older snapshot (change 3, still holding y) wins ...
                assert passed["x"].wait(60)
                release["y"].set()  # ... then y publishes (change 4), conditional on change 2
                for worker, process in workers.items():
                    process.join(60)
                    assert process.exitcode == 0, worker
                assert [done.get(timeout=5), done.get(timeout=5)] == [True, True]
        finally:
            proxy.close()
        for key in keys.values():
            assert aws.result(key)["kind"] == "forget" and aws.result(key)["removed"] is True
        left = {prefix: sorted(set(listed) & set(keys.values())) for prefix, listed in snapshot_keys(aws).items()}
        assert not any(left.values()), f"a forgotten face is still in a snapshot: {left}"
