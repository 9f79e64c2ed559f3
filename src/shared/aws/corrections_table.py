"""Correction records in DynamoDB (CORRECTIONS_TABLE): a person's decisions about faces, replayed
every time those faces are seen again (shared/pipeline/corrections.py).

Items (hash key `pk`, range key `sk`, both strings):
- `pk` = `e#<source etag>`: every record of one content is one Query (the recognition path's only read);
- `sk` = `<face key>#is` (the decision `is` PERSON or `not_a_face`: one per face, the latest wins)
  or `<face key>#not#<person or cluster id>` (as many `not`s as the user made) or `<face key>#added`
  (a face the detector missed, added by its box: `lambdaface add-face`); the face key is
  `<t or ->@<left>,<top>,<width>,<height>` (engine/corrections.face_key).
- attributes: `id` (12 hex digits, what `lambdaface corrections` shows and `undo` takes), `etag`,
  `box`, `t` (video frames), `decision` (`is`, `not`, `not_a_face`, `added`), `person` or `cluster`
  (an `added` record: the person given with `--is`, else none), `source` (the key it was made on),
  `made_at`, and `unknown_face` (the remembered face a `not <cluster>` took out of that cluster).
- a copy of each record that names someone, so that forgetting or merging them is a Query, not a
  Scan: `pk` = `n#<person>`, or `c#apart` for every `not <cluster>` (a regroup reads them all),
  `sk` = `<record pk>|<record sk>`; written before the record and deleted after it.
No embedding, no crop, no TTL: a record lasts until it is undone or its person is forgotten.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator

from shared.aws.clients import client
from shared.aws.dynamo import from_item, to_item, value

IS_SK, NOT_SK, ADDED_SK = "#is", "#not#", "#added"


def etag_pk(etag: str) -> str:
    return f"e#{etag}"


def record_id(pk: str, sk: str) -> str:
    """A record's short id (stable: the same decision on the same face has the same id)."""
    return hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()[:12]


APART = "c#apart"


def pointer_pk(item: dict[str, Any]) -> str | None:
    """Where a record's copy lives: its person's partition, `c#apart` for a cluster; None (no name)."""
    if item.get("person"):
        return f"n#{item['person']}"
    return APART if item.get("cluster") else None


class CorrectionsTable:
    """The correction records; every call is one or a few DynamoDB requests."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def _db(self) -> Any:
        return client("dynamodb")

    def put(self, item: dict[str, Any]) -> None:
        """Write a record (its copy first: a record is never without one)."""
        pointer = pointer_pk(item)
        if pointer:
            self._db.put_item(TableName=self.name, Item=to_item({**item, "pk": pointer, "sk": f"{item['pk']}|{item['sk']}",
                                                                 "record_pk": item["pk"], "record_sk": item["sk"]}))
        self._db.put_item(TableName=self.name, Item=to_item(item))

    def delete(self, item: dict[str, Any]) -> None:
        """Delete a record (given as stored, or as its copy), then its copy."""
        pk, sk = item.get("record_pk", item["pk"]), item.get("record_sk", item["sk"])
        self._db.delete_item(TableName=self.name, Key=_key(pk, sk))
        pointer = pointer_pk(item)
        if pointer:
            self._db.delete_item(TableName=self.name, Key=_key(pointer, f"{pk}|{sk}"))

    def delete_copy(self, item: dict[str, Any]) -> None:
        """Delete only a record's copy (the record was overwritten under another name)."""
        pointer = pointer_pk(item)
        if pointer:
            pk, sk = item.get("record_pk", item["pk"]), item.get("record_sk", item["sk"])
            self._db.delete_item(TableName=self.name, Key=_key(pointer, f"{pk}|{sk}"))

    def _query(self, pk: str) -> list[dict[str, Any]]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self.name, ConsistentRead=True, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": value(pk)})
        return [from_item(i) for page in pages for i in page.get("Items", [])]

    def for_etag(self, etag: str) -> list[dict[str, Any]]:
        """Every record of one content (one strongly consistent Query, paginated past 1 MB)."""
        return self._query(etag_pk(etag))

    def naming(self, person: str) -> list[dict[str, Any]]:
        """The copies of every record naming `person` (a Query)."""
        return self._query(f"n#{person}")

    def apart(self) -> list[dict[str, Any]]:
        """The copies of every `not <cluster>` record (a Query)."""
        return self._query(APART)

    def scan(self, record: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record (the `corrections` command: they are made by hand, so few), or the one whose id is `record`."""
        kwargs: dict[str, Any] = {"TableName": self.name, "ConsistentRead": True, "FilterExpression": "begins_with(pk, :e)",
                                  "ExpressionAttributeValues": {":e": value("e#")}}
        if record is not None:
            kwargs["FilterExpression"] += " AND id = :i"
            kwargs["ExpressionAttributeValues"][":i"] = value(record)
        for page in self._db.get_paginator("scan").paginate(**kwargs):
            yield from (from_item(i) for i in page.get("Items", []))


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}
