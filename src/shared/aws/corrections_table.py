"""Correction records in DynamoDB (CORRECTIONS_TABLE): a person's decisions about faces, replayed
every time those faces are seen again (shared/pipeline/corrections.py).

Items (hash key `pk`, range key `sk`, both strings):
- `pk` = `e#<source etag>`: every record of one content is one Query (the recognition path's only read);
- `sk` = `<face key>#is` (the decision `is` PERSON or `not_a_face`: one per face, the latest wins)
  or `<face key>#not#<person or cluster id>` (as many `not`s as the user made); the face key is
  `<t or ->@<left>,<top>,<width>,<height>` (engine/corrections.face_key).
- attributes: `id` (12 hex digits, what `lambdaface corrections` shows and `undo` takes), `etag`,
  `box`, `t` (video frames), `decision`, `person` or `cluster`, `source` (the key it was made on),
  `made_at`, and `unknown_face` (the remembered face a `not <cluster>` took out of that cluster).
No embedding, no crop, no TTL: a record lasts until it is undone or its person is forgotten.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator

from shared.aws.clients import client
from shared.aws.dynamo import from_item, to_item, value

IS_SK, NOT_SK = "#is", "#not#"


def etag_pk(etag: str) -> str:
    return f"e#{etag}"


def record_id(pk: str, sk: str) -> str:
    """A record's short id (stable: the same decision on the same face has the same id)."""
    return hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()[:12]


class CorrectionsTable:
    """The correction records; every call is one or a few DynamoDB requests."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def _db(self) -> Any:
        return client("dynamodb")

    def put(self, item: dict[str, Any]) -> None:
        self._db.put_item(TableName=self.name, Item=to_item(item))

    def delete(self, pk: str, sk: str) -> None:
        self._db.delete_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def for_etag(self, etag: str) -> list[dict[str, Any]]:
        """Every record of one content (one strongly consistent Query, paginated past 1 MB)."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self.name, ConsistentRead=True, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": value(etag_pk(etag))})
        return [from_item(i) for page in pages for i in page.get("Items", [])]

    def scan(self, person: str | None = None, record: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record (tools, forget, merge: records are made by hand, so few), optionally only
        those naming `person` (or cluster id) or the one whose id is `record`."""
        kwargs: dict[str, Any] = {"TableName": self.name, "ConsistentRead": True}
        if person is not None:
            kwargs.update(FilterExpression="person = :n OR #c = :n", ExpressionAttributeNames={"#c": "cluster"},
                          ExpressionAttributeValues={":n": value(person)})
        elif record is not None:
            kwargs.update(FilterExpression="id = :i", ExpressionAttributeValues={":i": value(record)})
        for page in self._db.get_paginator("scan").paginate(**kwargs):
            yield from (from_item(i) for i in page.get("Items", []))
