"""S3 objects: read a source photo, check that it still exists, write results."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from shared.aws.clients import client, error_code

MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 says about an object, without its bytes."""

    etag: str  # without quotes
    size: int
    version_id: str | None = None


@dataclass(frozen=True)
class S3Object:
    """An object's bytes and identity."""

    data: bytes
    info: ObjectInfo


class ObjectMissing(Exception):
    """The object (or the version asked for) does not exist (any more)."""


class ObjectChanged(Exception):
    """The object no longer has the ETag asked for (it was replaced)."""


def _info(response: dict[str, Any]) -> ObjectInfo:
    version = response.get("VersionId")
    return ObjectInfo(
        etag=str(response.get("ETag", "")).strip('"'),
        size=int(response.get("ContentLength", 0)),
        version_id=None if version in (None, "null") else version,
    )


def get_object(bucket: str, key: str) -> S3Object:
    """Download `key`; raises ObjectMissing if it is gone."""
    with open_object(bucket, key) as (info, body):
        return S3Object(body.read(), info)


@contextmanager
def open_object(bucket: str, key: str, if_match: str | None = None) -> Iterator[tuple[ObjectInfo, Any]]:
    """`key`'s identity and a stream of its bytes, closed on exit (what is not read is not downloaded).

    Raises ObjectMissing if it is gone, ObjectChanged if its ETag is no longer `if_match`."""
    extra = {"IfMatch": f'"{if_match}"'} if if_match else {}
    try:
        response = client("s3").get_object(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        code = error_code(exc)
        if if_match and code in ("PreconditionFailed", "412"):
            raise ObjectChanged(f"s3://{bucket}/{key} was replaced (its ETag is no longer {if_match})") from None
        # Without s3:ListBucket, S3 answers 403 rather than 404 for a missing key: ask stat().
        if code in MISSING_CODES or (code == "AccessDenied" and stat(bucket, key) is None):
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist") from None
        raise
    with response["Body"] as body:
        yield _info(response), body


def stat(bucket: str, key: str) -> ObjectInfo | None:
    """The object's ETag and size, or None when it does not exist.

    A listing, not a HEAD: it needs only s3:ListBucket limited to the key's prefix
    (`s3:prefix` condition), where a HEAD of a missing key would need bucket-wide listing
    rights to tell "missing" (404) from "forbidden" (403)."""
    response = client("s3").list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    for found in response.get("Contents", []):
        if found["Key"] == key:
            return ObjectInfo(str(found.get("ETag", "")).strip('"'), int(found.get("Size", 0)))
    return None


def put_object(bucket: str, key: str, data: bytes, content_type: str, if_match: str | None = None) -> ObjectInfo:
    """Write `data` at `key`; with `if_match`, only over the object of that ETag (S3's conditional
    write), else ObjectChanged (or ObjectMissing when there is none)."""
    extra = {"IfMatch": f'"{if_match}"'} if if_match else {}
    try:
        response = client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
    except Exception as exc:
        code = error_code(exc)
        if if_match and code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise ObjectChanged(f"s3://{bucket}/{key} was replaced (its ETag is no longer {if_match})") from None
        if if_match and code in MISSING_CODES:
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist") from None
        raise
    return ObjectInfo(str(response.get("ETag", "")).strip('"'), len(data), response.get("VersionId"))


def put_json(bucket: str, key: str, document: dict[str, Any], if_match: str | None = None) -> ObjectInfo:
    """Write `document` as pretty, UTF-8 JSON at `key` (with `if_match`, as put_object does)."""
    data = json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")
    return put_object(bucket, key, data, "application/json", if_match)
