"""The local stack's events (issue 22): the workers' PutEvents pass the guard, the stack's own rule
and queue drain them into <state>/events.jsonl (0600), one line per finished job, and POST each to
`--webhook` (a server on 127.0.0.1 here, which refuses its first POST: the stack tries again);
`lambdaface watch --events --person/--unknown` filters them; other EventBridge calls, targets other
than SQS queues and non-loopback webhooks are refused."""
from __future__ import annotations

import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.cli import lambdaface
from support.signed import send
from support.stack import StackClients, StackProcess, stack_fixture

from lambdaface import client, watch
from lambdaface.local.event_log import EVENTS_FILE, WEBHOOK_ATTEMPTS, EventLog

EVENTS_JSON = {"Content-Type": "application/x-amz-json-1.1"}


class Webhook:
    """An HTTP server on 127.0.0.1 keeping each POSTed JSON body; it answers 503 to the first `refuse` POSTs."""

    def __init__(self, refuse: int = 1) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refuse, self.posts = refuse, 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.posts += 1
                if hook.posts <= hook.refuse:
                    self.send_response(503)
                else:
                    hook.bodies.append(json.loads(body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


HOOK: Webhook | None = None


def _with_webhook(directory: Path) -> list[str]:
    global HOOK
    HOOK = Webhook()
    return ["--webhook", HOOK.url, "--remember-unknowns"]


stack = stack_fixture("events", workers=1, prepare=_with_webhook)


def events_of(stack: StackProcess, n: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The events file's events, once it holds at least `n`."""
    path = stack.state_dir / EVENTS_FILE
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return [json.loads(x) for x in lines]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def jobs_done(stack: StackProcess, faces_dir: Path) -> list[dict[str, Any]]:
    """john enrolled, then john1.jpg (john) and obama.jpg (an unknown face, remembered) recognized."""
    s3 = stack.client("s3")
    for uploads in ({"models/john/john0.jpg": faces_dir / "seed/john0.jpg"},
                    {"queries/john1.jpg": faces_dir / "seed/john1.jpg", "queries/obama.jpg": faces_dir / "people/obama/obama.jpg"}):
        sent = [client.upload(s3, stack.bucket, path, key, "enroll" if key.startswith("models/") else "recognize")
                for key, path in uploads.items()]
        found = watch.wait_for(s3, stack.bucket, sent, timeout=180)
        assert all(found.values()), stack.stderr()[-3000:]
    return events_of(stack, 3)


def test_one_event_line_per_finished_job(stack: StackProcess, jobs_done: list[dict[str, Any]]) -> None:
    aws = StackClients(stack)
    jobs = aws.jobs()
    assert len(jobs) == 3 and all(j["event_sent"] == j["finished_at"] for j in jobs)
    assert sorted(e["detail"]["job_id"] for e in jobs_done) == sorted(j["job_id"] for j in jobs)
    by_source = {e["detail"]["source"]: e for e in jobs_done}
    assert by_source["models/john/john0.jpg"]["detail-type"] == "Enroll job finished"
    assert by_source["queries/john1.jpg"]["detail"]["people"] == ["john"]
    obama = by_source["queries/obama.jpg"]["detail"]
    clusters = [f["cluster"] for f in aws.result("queries/obama.jpg")["faces"]]
    assert obama["unknown_seen"] and obama["unknown_clusters"] == clusters and clusters[0].startswith("u-")
    assert stat.S_IMODE((stack.state_dir / EVENTS_FILE).stat().st_mode) == 0o600


def test_the_webhook_receives_each_event_after_a_refusal(stack: StackProcess, jobs_done: list[dict[str, Any]]) -> None:
    assert HOOK is not None
    deadline = time.monotonic() + 30
    while len(HOOK.bodies) < len(jobs_done) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert HOOK.posts == len(jobs_done) + 1  # the first POST was answered 503, and tried again
    assert sorted(b["id"] for b in HOOK.bodies) == sorted(e["id"] for e in jobs_done)
    assert all(b["source"] == "lambdaface" and b["detail"]["job_id"] for b in HOOK.bodies)


def test_watch_events_filters_by_person_and_unknown(stack: StackProcess, jobs_done: list[dict[str, Any]]) -> None:
    common = ("watch", "--events", "--state-dir", str(stack.state_dir), "--all", "--timeout", "0")
    john = lambdaface(*common, "--person", "john", stack=stack)
    assert john.returncode == 0, john.stderr
    lines = john.stdout.splitlines()
    assert len(lines) == 2 and {"models/john/john0.jpg", "queries/john1.jpg"} == {ln.split("  ")[2] for ln in lines}
    unknown = lambdaface(*common, "--unknown", "--json", stack=stack)
    [seen] = [json.loads(x) for x in unknown.stdout.splitlines()]
    assert seen["detail"]["source"] == "queries/obama.jpg"
    everyone = lambdaface(*common, stack=stack)
    assert len(everyone.stdout.splitlines()) == 3
    nobody = lambdaface(*common, "--person", "biden", stack=stack)
    assert nobody.stdout == ""


def test_the_guard_serves_only_the_events_calls_the_stack_uses(stack: StackProcess) -> None:
    keys = stack.keys
    listed = send(stack.endpoint, "events", "POST", "/", {**EVENTS_JSON, "X-Amz-Target": "AWSEvents.ListRules"}, b"{}", keys=keys)
    assert listed.status == 403 and b"PutEvents" in listed.body
    target = json.dumps({"Rule": "lambdaface-local-events", "Targets": [
        {"Id": "out", "Arn": "arn:aws:events:us-east-1:123456789012:api-destination/out/x"}]}).encode()
    put = send(stack.endpoint, "events", "POST", "/", {**EVENTS_JSON, "X-Amz-Target": "AWSEvents.PutTargets"}, target, keys=keys)
    assert put.status == 403 and b"SQS queues only" in put.body
    entry = json.dumps({"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}"}]}).encode()
    unsigned = send(stack.endpoint, "events", "POST", "/", {**EVENTS_JSON, "X-Amz-Target": "AWSEvents.PutEvents"}, entry)
    assert unsigned.status == 403
    signed = send(stack.endpoint, "events", "POST", "/", {**EVENTS_JSON, "X-Amz-Target": "AWSEvents.PutEvents"}, entry, keys=keys)
    assert signed.status == 200


@pytest.mark.parametrize("url", ["http://example.com/hook", "http://10.0.0.1:8080/", "ftp://127.0.0.1/x", "http://0.0.0.0:9/"])
def test_a_webhook_off_loopback_is_refused(url: str, tmp_path: Path) -> None:
    run = lambdaface("local", "--state-dir", str(tmp_path / "state"), "--webhook", url, timeout=60)
    assert run.returncode == 2 and "--webhook" in run.stderr
    assert not (tmp_path / "state").exists()


def test_old_event_lines_expire(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    now = time.time()
    old = {"id": "a", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 8 * 86400))}
    new = {"id": "b", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 6 * 86400))}
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    log = EventLog(tmp_path, None, None)
    assert log.expire(now) == 1
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["b"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_webhook_is_tried_a_bounded_number_of_times(tmp_path: Path) -> None:
    """A receiver that always answers 503 gets WEBHOOK_ATTEMPTS POSTs, then the event is left in the file."""
    hook = Webhook(refuse=10**6)
    messages: list[str] = []
    log = EventLog(tmp_path, None, None, hook.url, messages.append)
    assert log.post({"id": "e-1", "detail-type": "Enroll job finished"}) is False
    assert hook.posts == WEBHOOK_ATTEMPTS and hook.bodies == []
    assert "did not take event e-1" in messages[0]
