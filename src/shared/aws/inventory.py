"""What exists, listed without reading any image or embedding: the objects under a prefix, and the
keys of the gallery's face items (reconciliation and the audit compare them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from shared.aws import dynamo
from shared.aws.clients import client


@dataclass(frozen=True)
class Listed:
    """One object of a listing."""

    key: str
    etag: str  # without quotes
    modified: float  # epoch seconds (S3's LastModified)


@dataclass(frozen=True)
class FaceKey:
    """One face item of the gallery, without its embedding."""

    person: str
    image_key: str
    etag: str


def objects(bucket: str, prefix: str) -> dict[str, Listed]:
    """Every object under `prefix` (ListObjectsV2, paginated): key -> what the listing says."""
    found: dict[str, Listed] = {}
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            found[entry["Key"]] = Listed(entry["Key"], str(entry.get("ETag", "")).strip('"'),
                                         entry["LastModified"].timestamp())
    return found


def face_keys(table: str, person: str | None = None) -> Iterator[FaceKey]:
    """The face items of `person` (a Query of its partition), or of everyone (a Scan that skips the
    `#` bookkeeping partitions); only their keys and ETags are read."""
    projection: dict[str, Any] = {"ProjectionExpression": "#p, image_key, etag", "ExpressionAttributeNames": {"#p": "person"}}
    if person is not None:
        pages = client("dynamodb").get_paginator("query").paginate(
            TableName=table, ConsistentRead=True, KeyConditionExpression="#p = :p",
            ExpressionAttributeValues={":p": {"S": person}}, **projection)
    else:
        pages = client("dynamodb").get_paginator("scan").paginate(TableName=table, **projection)
    for page in pages:
        for raw in page.get("Items", []):
            item = dynamo.from_item(raw)
            if not str(item.get("person", "#")).startswith("#"):
                yield FaceKey(item["person"], item["image_key"], str(item.get("etag", "")))
