"""The local stack's API pool (lambdaface/local/api.py) and the synchronous client's retries
(lambdaface/sync_client.py): a busy pool answers 429, a worker that dies or passes its timeout is
replaced and its caller gets 503, and the client retries 429 and 503 with backoff, then gives up."""
from __future__ import annotations

import json
import multiprocessing
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from botocore.credentials import Credentials
from support import TESTS

from lambdaface import sync_client
from lambdaface.local import api
from lambdaface.local.spec import UrlFunctionSpec


def event(query: str = "") -> dict[str, Any]:
    return {"rawPath": "/recognize", "rawQueryString": query, "body": "", "isBase64Encoded": False}


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[api.ApiPool]:
    monkeypatch.setattr(api, "BUSY_WAIT_S", 0.3)
    fn = UrlFunctionSpec("TestApi", "test-api", "support.api_handler.handler", "AWS_IAM", timeout_s=2)
    config = api.ApiWorkerConfig(fn, "us-east-1", {"PYTHONPATH": str(TESTS)})
    logged: list[str] = []
    created = api.ApiPool(multiprocessing.get_context("spawn"), config, 1, logged.append)
    created.logged = logged  # type: ignore[attr-defined]
    yield created
    created.stop()


def body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])


def test_a_busy_pool_answers_429_and_serves_again_after(pool: api.ApiPool) -> None:
    first = body(pool.invoke(event()))  # the worker is up (its import done)
    slow: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: slow.append(pool.invoke(event("sleep=1.5"))))
    thread.start()
    while pool.idle.qsize():  # the slow call has the only worker
        time.sleep(0.01)
    throttled = pool.invoke(event())
    assert throttled["statusCode"] == 429 and body(throttled)["error"]["code"] == "TOO_MANY_REQUESTS"
    thread.join()
    assert slow[0]["statusCode"] == 200
    assert body(pool.invoke(event()))["pid"] == first["pid"]  # the same warm worker


def test_a_worker_that_dies_or_times_out_is_replaced_and_its_caller_gets_503(pool: api.ApiPool) -> None:
    pid = body(pool.invoke(event()))["pid"]
    died = pool.invoke(event("exit=1"))
    assert died["statusCode"] == 503 and body(died)["error"]["code"] == "UNAVAILABLE"
    replacement = body(pool.invoke(event()))["pid"]
    assert replacement != pid and pool.pids() == [replacement]
    late = pool.invoke(event("sleep=5"))  # past the function's 2 s timeout
    assert late["statusCode"] == 503 and "timed out" in body(late)["error"]["message"]
    assert body(pool.invoke(event()))["pid"] not in (pid, replacement)
    assert sum("starting another" in line for line in pool.logged) == 2  # type: ignore[attr-defined]


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next status of `script` (then 200), recording the requests."""

    script: list[int] = []
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Scripted.seen.append(dict(self.headers))
        status = Scripted.script.pop(0) if Scripted.script else 200
        data = json.dumps({"status": "succeeded"} if status == 200 else
                          {"error": {"code": "X", "message": f"scripted {status}"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(sync_client, "BACKOFF_S", 0.01)
    Scripted.script, Scripted.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_the_client_signs_and_retries_429_and_503(server: str) -> None:
    Scripted.script = [429, 503, 429]
    client = sync_client.ApiClient(server, "eu-west-1", Credentials("AKIDEXAMPLE", "secret"))
    assert client.recognize(b"photo", top_k=2) == {"status": "succeeded"}
    assert client.retries == 3 and len(Scripted.seen) == 4
    auth = Scripted.seen[-1]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/lambda/aws4_request" in auth


def test_the_client_gives_up_after_its_attempts_and_never_retries_a_bad_request(server: str) -> None:
    client = sync_client.ApiClient(server, "us-east-1", Credentials("a", "b"), attempts=3)
    Scripted.script = [503] * 5
    with pytest.raises(sync_client.ApiFailed) as failed:
        client.recognize(b"photo")
    assert failed.value.status == 503 and len(Scripted.seen) == 3
    Scripted.script, Scripted.seen = [400], []
    with pytest.raises(sync_client.ApiFailed) as failed:
        client.recognize(b"photo")
    assert failed.value.status == 400 and len(Scripted.seen) == 1
