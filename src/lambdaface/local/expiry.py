"""What AWS expires by itself, expired by the local stack: the bucket's lifecycle rules (template.yaml:
queries/ and results/ after RetentionDays, work/ after 1 day) and the tables' TTL attributes.

    expire(spec, s3, dynamodb, now=time.time())   # at the stack's start and at every autosave

An object expires `days` after it was written (S3 itself waits for the next midnight UTC after
that, and may take a day more); an item expires once its TTL attribute, a Number of epoch seconds,
is in the past (DynamoDB takes up to a few days; items without the attribute, or with another
type, never expire). Deletes go through the APIs, in batches.
"""
from __future__ import annotations

from typing import Any

from lambdaface.local.spec import StackSpec

DAY_S = 86400


def expire(spec: StackSpec, s3: Any, dynamodb: Any, now: float) -> dict[str, int]:
    """Delete the expired objects and items; returns how many of each."""
    return {"objects": _expire_objects(spec, s3, now), "items": _expire_items(spec, dynamodb, now)}


def _expire_objects(spec: StackSpec, s3: Any, now: float) -> int:
    expired: list[str] = []
    for rule in spec.expiry:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=rule.prefix):
            expired += [o["Key"] for o in page.get("Contents", [])
                        if o["LastModified"].timestamp() + rule.days * DAY_S <= now]
    expired = sorted(set(expired))
    for start in range(0, len(expired), 1000):
        s3.delete_objects(Bucket=spec.bucket,
                          Delete={"Objects": [{"Key": k} for k in expired[start:start + 1000]], "Quiet": True})
    return len(expired)


def _expire_items(spec: StackSpec, dynamodb: Any, now: float) -> int:
    count = 0
    for table in spec.tables.values():
        attribute = table.ttl_attribute
        if not attribute:
            continue
        key_names = [k["AttributeName"] for k in table.properties["KeySchema"]]
        keys = [{k: item[k] for k in key_names}
                for page in dynamodb.get_paginator("scan").paginate(TableName=table.name)
                for item in page.get("Items", [])
                if _expired(item.get(attribute), now)]
        for start in range(0, len(keys), 25):
            pending: dict[str, Any] = {table.name: [{"DeleteRequest": {"Key": k}} for k in keys[start:start + 25]]}
            while pending:
                pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        count += len(keys)
    return count


def _expired(value: Any, now: float) -> bool:
    """DynamoDB TTL: a Number attribute of epoch seconds in the past."""
    if not isinstance(value, dict) or "N" not in value:
        return False
    try:
        return float(value["N"]) < now
    except ValueError:
        return False
