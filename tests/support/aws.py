"""boto3 clients of the tests' own, aimed at moto's server or a local stack (dummy credentials),
and the reads tests repeat on one bucket."""
from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3

from lambdaface import watch
from lambdaface.local.process import REGION
from lambdaface.local.stack import CREDENTIALS
from shared.aws.dynamo import from_item
from shared.pipeline.keys import RESULTS_PREFIX, result_key

__all__ = ["CREDENTIALS", "REGION", "Clients", "client", "handler_env"]


def client(endpoint: str, service: str, **credentials: str) -> Any:
    """A boto3 client aimed at `endpoint` (the dummy credentials unless others are given)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **(credentials or CREDENTIALS))


def handler_env(endpoint: str) -> dict[str, str]:
    """The environment that points handlers run in this process (their boto3) at `endpoint`."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


class Clients:
    """A test's clients of one endpoint, one per service and made on first use (making one costs
    more than a call), and the reads tests repeat on one bucket."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint, self.bucket = endpoint, bucket

    @cached_property
    def s3(self) -> Any:
        return client(self.endpoint, "s3")

    @cached_property
    def sqs(self) -> Any:
        return client(self.endpoint, "sqs")

    @cached_property
    def dynamodb(self) -> Any:
        return client(self.endpoint, "dynamodb")

    # --- S3 ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> str:
        """Put an object; its ETag (without quotes)."""
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"].strip('"')

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def etag(self, key: str) -> str:
        return self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, in order."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def has(self, prefix: str) -> bool:
        return bool(self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("KeyCount"))

    def maybe_result(self, source: str) -> dict[str, Any] | None:
        """The result document of `source`, or None when there is none (yet)."""
        return watch.read_json(self.s3, self.bucket, result_key(source))

    def result(self, source: str) -> dict[str, Any]:
        """The result document of `source`, which must be there."""
        doc = self.maybe_result(source)
        assert doc is not None, f"no result for {source}"
        return doc

    def result_sources(self) -> list[str]:
        """The source key of every result document in the bucket."""
        keys = [k for k in self.keys(RESULTS_PREFIX) if k.endswith(".json")]
        return [k.removeprefix(RESULTS_PREFIX).removesuffix(".json") for k in keys]

    # --- DynamoDB ----------------------------------------------------------------------------

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of `table`, as plain values (shared.aws.dynamo.from_item)."""
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=table)
        return [from_item(item) for page in pages for item in page["Items"]]
