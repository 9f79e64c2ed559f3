"""Test support for the event pipeline: moto's server over real HTTP, a fault-injecting proxy,
and Lambda-shaped SQS events. Imported by tests/test_pipeline_*.py."""
from __future__ import annotations

import http.client
import itertools
import json
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote_plus

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback, for the whole session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_env(endpoint: str) -> dict[str, str]:
    """Environment that points boto3 at moto with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@dataclass
class Context:
    """The Lambda context object a handler receives (Lambda's, or the local stack's)."""

    function_name: str = "lambdaface-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:lambdaface-test"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def s3_event_body(bucket: str, key: str, etag: str = "", event_name: str = "ObjectCreated:Put", **extra: Any) -> str:
    """An S3 event notification as S3 puts it in an SQS message body (key URL-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key), "size": extra.pop("size", 0), **extra}
    if etag:
        obj["eTag"] = etag
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event_name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }
    return json.dumps({"Records": [record]})


def sqs_record(body: str, receive_count: int = 1, message_id: str | None = None) -> dict[str, Any]:
    """One record of the SQS batch event Lambda gives a function."""
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "handle-" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1714564800000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1714564800001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:lambdaface-test",
        "awsRegion": REGION,
    }


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


@dataclass
class Stack:
    """A bucket and both tables in moto, named uniquely, with the env the handlers read."""

    endpoint: str
    bucket: str
    jobs_table: str
    gallery_table: str

    def boto(self, service: str) -> Any:
        """A boto3 client of the test's own (not the handlers')."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    @property
    def s3(self) -> Any:
        return self.boto("s3")

    @property
    def dynamodb(self) -> Any:
        return self.boto("dynamodb")

    def env(self) -> dict[str, str]:
        return {"JOBS_TABLE": self.jobs_table, "GALLERY_TABLE": self.gallery_table}

    def upload(self, key: str, data: bytes) -> str:
        """Put an object; returns its ETag (without quotes)."""
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"].strip('"')

    def event(self, key: str, receive_count: int = 1, **kwargs: Any) -> dict[str, Any]:
        """A one-record SQS batch announcing `key` (its current ETag unless given)."""
        etag = kwargs.pop("etag", None)
        if etag is None and not kwargs.get("event_name", "").startswith("ObjectRemoved"):
            etag = self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')
        return batch(sqs_record(s3_event_body(self.bucket, key, etag or "", **kwargs), receive_count))

    def result(self, source_key: str) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=self.bucket, Key=f"results/{source_key}.json")["Body"].read()
        return json.loads(body)

    def has(self, key: str) -> bool:
        return bool(self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key).get("KeyCount"))

    def jobs(self) -> list[dict[str, Any]]:
        from shared.aws.dynamo import from_item

        items = self.dynamodb.scan(TableName=self.jobs_table)["Items"]
        return [from_item(item) for item in items]


def make_stack(endpoint: str, versioned: bool = False) -> Stack:
    n = f"{next(_names)}-{uuid.uuid4().hex[:6]}"
    stack = Stack(endpoint, f"lambdaface-{n}", f"jobs-{n}", f"gallery-{n}")
    stack.s3.create_bucket(Bucket=stack.bucket)
    if versioned:
        stack.s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    ddb = stack.dynamodb
    ddb.create_table(
        TableName=stack.jobs_table,
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName=stack.gallery_table,
        KeySchema=[{"AttributeName": "person", "KeyType": "HASH"}, {"AttributeName": "image_key", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "person", "AttributeType": "S"},
            {"AttributeName": "image_key", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return stack


@contextmanager
def stack_context(endpoint: str, versioned: bool = False, **env: str) -> Iterator[Stack]:
    """A fresh stack, with the handlers' environment pointing at it while the context lasts."""
    stack = make_stack(endpoint, versioned)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_MAX_ATTEMPTS"):
            mp.delenv(name, raising=False)
        for name, value in {**aws_env(endpoint), **stack.env(), **env}.items():
            mp.setenv(name, value)
        yield stack


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[Stack]:
    """A fresh, empty stack for one test."""
    with stack_context(moto_endpoint) as fresh:
        yield fresh


class FaultProxy:
    """An HTTP proxy in front of moto that answers 503 SlowDown to chosen requests.

    `fail(n, when)` makes the next `n` requests for which `when(method, path)` is true fail;
    everything else is forwarded to moto unchanged."""

    def __init__(self, target: str) -> None:
        self.target_host, self.target_port = target.removeprefix("http://").split(":")
        self.remaining = 0
        self.when: Callable[[str, str], bool] = lambda method, path: False
        self.injected: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, n: int, when: Callable[[str, str], bool]) -> None:
        with self._lock:
            self.remaining, self.when = n, when

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            if self.remaining > 0 and self.when(method, path):
                self.remaining -= 1
                self.injected.append((method, path))
                return True
        return False

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        if self._should_fail(request.command, request.path):
            payload = b"<Error><Code>SlowDown</Code><Message>injected by FaultProxy</Message></Error>"
            request.send_response(503)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.target_host, int(self.target_port), timeout=30)
        try:
            upstream.request(request.command, request.path, body=body, headers=dict(request.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        request.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                request.send_header(name, value)
        length = response.getheader("Content-Length") if request.command == "HEAD" else None
        request.send_header("Content-Length", length or str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read(faces_dir: Path, rel: str) -> bytes:
    return (faces_dir / rel).read_bytes()
