"""moto's server in this process, on a port the operating system picks, and fresh resources per
test: a bucket and the three tables, named uniquely, with the handlers' environment pointing at them.

moto's backends are global to the process: every server in it shares them (hence unique names).
"""
from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from moto.server import ThreadedMotoServer

from support.aws import Clients, handler_env
from support.lambda_events import batch, record, s3_event_body

_names = itertools.count()


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on loopback port 0 (bound once, by the server itself); its endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class MotoResources(Clients):
    """A bucket and both tables in moto, named uniquely."""

    def __init__(self, endpoint: str, versioned: bool = False) -> None:
        n = f"{next(_names)}-{uuid.uuid4().hex[:6]}"
        super().__init__(endpoint, f"lambdaface-{n}")
        self.jobs_table, self.gallery_table, self.unknowns_table = f"jobs-{n}", f"gallery-{n}", f"unknowns-{n}"
        self.s3.create_bucket(Bucket=self.bucket)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        self.dynamodb.create_table(
            TableName=self.jobs_table,
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for table in (self.gallery_table, self.unknowns_table):
            self.dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "person", "KeyType": "HASH"}, {"AttributeName": "image_key", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "person", "AttributeType": "S"},
                    {"AttributeName": "image_key", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )

    def env(self) -> dict[str, str]:
        """The handlers' environment for these resources (besides the endpoint's)."""
        return {"JOBS_TABLE": self.jobs_table, "GALLERY_TABLE": self.gallery_table,
                "UNKNOWNS_TABLE": self.unknowns_table, "LAMBDAFACE_BUCKET": self.bucket}

    def jobs(self) -> list[dict[str, Any]]:
        """The job records."""
        return self.scan(self.jobs_table)

    def event(self, key: str, receive_count: int = 1, **kwargs: Any) -> dict[str, Any]:
        """A one-record SQS batch event announcing `key` (with its current ETag unless given;
        `kwargs` go to lambda_events.s3_event_body)."""
        etag = kwargs.pop("etag", None)
        if etag is None and not kwargs.get("event_name", "").startswith("ObjectRemoved"):
            etag = self.etag(key)
        return batch(record(s3_event_body(self.bucket, key, etag or "", **kwargs), receive_count))


@contextmanager
def moto_resources(endpoint: str, versioned: bool = False, **env: str) -> Iterator[MotoResources]:
    """Fresh resources, with the environment of handlers run in this process pointing at them
    (plus `env`) while the context lasts."""
    resources = MotoResources(endpoint, versioned)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB",
                     "AWS_MAX_ATTEMPTS"):
            mp.delenv(name, raising=False)
        for name, value in {**handler_env(endpoint), **resources.env(), **env}.items():
            mp.setenv(name, value)
        yield resources
