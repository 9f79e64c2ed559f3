"""The local stack's exposure on loopback (issue 21): a non-loopback --host is refused, web pages
get no CORS grant and cannot write, a foreign Host (DNS rebinding) is refused, moto's control API
is not served. This module's stack is on IPv6 loopback (::1); tests/test_e2e_local.py runs the
end-to-end flow on it too."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support import ROOT
from support.signed import LIST_QUEUES, LIST_TABLES, list_objects, send
from support.stack import StackProcess, stack_fixture

from lambdaface.local.keys import DUMMY
from lambdaface.local.process import clean_env

stack = stack_fixture("ipv6", "--host", "::1", workers=1)
EVIL = "https://evil.example"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.com"])
def test_a_non_loopback_host_alone_is_refused_and_nothing_is_served(host: str, tmp_path: Path) -> None:
    port = _free_port()
    run = subprocess.run([sys.executable, "-m", "lambdaface.cli", "local", "--host", host, "--port", str(port),
                          "--workers", "0", "--state-dir", str(tmp_path / "state")],
                         cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"--host {host} is not a loopback address" in run.stderr and "--allow-remote" in run.stderr
    assert "ready at" not in run.stdout
    assert not (tmp_path / "state").exists()
    with socket.socket() as s:  # nothing listens on the port it was given
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_stack_listens_on_ipv6_loopback(stack: StackProcess) -> None:
    assert urlsplit(stack.endpoint).hostname == "::1" and stack.endpoint.startswith("http://[::1]:")


@pytest.mark.parametrize("request_", [LIST_TABLES, LIST_QUEUES, "s3"], ids=["dynamodb", "sqs", "s3"])
def test_a_web_page_gets_no_cors_grant(stack: StackProcess, request_: object) -> None:
    service, method, path, headers, body = list_objects(stack.bucket) if request_ == "s3" else request_  # type: ignore[misc]
    for signed in (None, DUMMY):  # a page's fetch() (unsigned), or one that knows the dummy keys
        answer = send(stack.endpoint, service, method, path, {**headers, "Origin": EVIL}, body, keys=signed)
        assert answer.status == 403, answer
        assert not any(h.startswith("access-control-") for h in answer.headers), answer.headers
    preflight = send(stack.endpoint, service, "OPTIONS", path, {"Origin": EVIL, "Access-Control-Request-Method": "PUT"})
    assert preflight.status == 403 and "access-control-allow-origin" not in preflight.headers, preflight
    # the same request without Origin (an SDK's): served, still without any CORS header
    answer = send(stack.endpoint, service, method, path, headers, body, keys=DUMMY)
    assert answer.status == 200, answer
    assert not any(h.startswith("access-control-") for h in answer.headers), answer.headers


def test_a_web_page_cannot_write_with_a_form(stack: StackProcess) -> None:
    """A cross-site form POST (no Origin check would let SQS's query protocol purge a queue)."""
    url = stack.client("sqs").get_queue_url(QueueName="lambdaface-EnrollQueue")["QueueUrl"]
    form = f"Action=PurgeQueue&QueueUrl={url}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}
    assert send(stack.endpoint, "sqs", "POST", "/", headers, form).status == 403
    assert send(stack.endpoint, "sqs", "POST", "/", {**headers, "Origin": "null"}, form).status == 403


def test_a_foreign_host_is_refused_and_the_own_host_served(stack: StackProcess) -> None:
    port = urlsplit(stack.endpoint).port
    service, method, path, headers, body = LIST_TABLES
    for foreign in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"{stack.bucket}.evil.example"):
        answer = send(stack.endpoint, service, method, path, headers, body, keys=DUMMY, host=foreign)
        assert answer.status == 403, (foreign, answer)
        assert answer.json()["__type"].endswith("AccessDeniedException") and "Host" in answer.json()["message"]
    for own in (f"[::1]:{port}", "[::1]", f"localhost:{port}"):
        answer = send(stack.endpoint, service, method, path, headers, body, keys=DUMMY, host=own)
        assert answer.status == 200, (own, answer)
        assert "lambdaface-GalleryTable" in answer.json()["TableNames"]


def test_moto_api_is_not_served(stack: StackProcess) -> None:
    for method, path in (("POST", "/moto-api/reset"), ("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset-auth"),
                         ("GET", "/moto-api/"), ("GET", "/latest/meta-data/iam/security-credentials/")):
        answer = send(stack.endpoint, "s3", method, path, keys=DUMMY)
        assert answer.status == 403, (path, answer)
    assert stack.client("s3").head_bucket(Bucket=stack.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_unsigned_requests_and_other_services_are_refused(stack: StackProcess) -> None:
    service, method, path, headers, body = LIST_TABLES
    assert send(stack.endpoint, service, method, path, headers, body).status == 403  # unsigned
    iam = send(stack.endpoint, "iam", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"},
               b"Action=ListUsers&Version=2010-05-08", keys=DUMMY)
    assert iam.status == 403 and b"serves s3, sqs, dynamodb" in iam.body
