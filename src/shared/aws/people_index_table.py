"""The person index in DynamoDB: where each person (or unknown cluster) appears.

Items (hash key `pk`, range key `sk`, both strings):
- an entry: `pk` = `p#<person>` or `c#<cluster id>`, `sk` = `<finished_at>#<source key>#<n>`, so one
  Query of a partition, newest first (ScanIndexForward false), answers `find`; `--since` is a key
  condition (`sk >= since`). Attributes: `source`, `result_key`, `finished_at`, `media`, `person` or
  `cluster`, `box` and `distance` (photos) or `intervals` and `seconds` (videos), `expires_at` (TTL).
- a source's manifest: `pk` = `s#<source key>`, `sk` = `#source`: `job_id` (the result it lists),
  `done`, `version` (every change adds one: writers condition on it), `entries` {sk: pk} and
  `stale` {sk: pk} (entries being replaced, deleted before `done`). Every entry ever written is in
  one of the two maps until it is deleted, so replacing a source never leaves one behind.
- a merge under way (`lambdaface merge`): `pk` = `m#<person>`, `sk` = `#merge`: `into` (the person
  it is merged into), `armed` (an image is being copied to `into`) and `expires_at`. While an armed
  one is there, the forget of the person's last face moves their entries to `into` instead of
  deleting them (shared/pipeline/people_index.py).
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from botocore.exceptions import ClientError

from shared.aws.clients import client
from shared.aws.dynamo import Update, from_item, to_item, value

SOURCE_SK = "#source"
MERGE_SK = "#merge"
BATCH = 25  # BatchWriteItem's limit


def person_pk(person: str) -> str:
    return f"p#{person}"


def cluster_pk(cluster: str) -> str:
    return f"c#{cluster}"


def source_pk(source: str) -> str:
    return f"s#{source}"


def merge_pk(person: str) -> str:
    return f"m#{person}"


class Conflict(Exception):
    """Another writer changed the manifest since it was read."""


class PeopleIndexTable:
    """The index table's items; every call is one or a few DynamoDB requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.writes = 0  # items written or deleted by this object (write units, at <= 1 KB an item)

    @property
    def _db(self) -> Any:
        return client("dynamodb")

    # --- manifests ------------------------------------------------------------------------------

    def manifest(self, source: str) -> dict[str, Any] | None:
        """A source's manifest (strongly consistent), or None."""
        item = self._db.get_item(TableName=self.name, Key=_key(source_pk(source), SOURCE_SK), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def put_manifest(self, source: str, fields: dict[str, Any], version: int | None) -> None:
        """Write the manifest, if its version is still `version` (None: if there is none); Conflict otherwise."""
        condition = "attribute_not_exists(pk)" if version is None else "#v = :v"
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if version is not None:
            kwargs.update(ExpressionAttributeNames={"#v": "version"}, ExpressionAttributeValues={":v": value(version)})
        try:
            self._db.put_item(TableName=self.name, Item=to_item({"pk": source_pk(source), "sk": SOURCE_SK, **fields}), **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(source) from None
            raise
        self.writes += 1

    def repoint(self, source: str, sk: str, old_pk: str, new_pk: str) -> bool:
        """The manifest's entry `sk` now lives under `new_pk`, if it still lives under `old_pk`."""
        update = Update()
        path = f"{update.name('entries')}.{update.name(sk)}"
        update.sets.append(f"{path} = {update.val(new_pk)}")
        update.sets.append(f"{update.name('version')} = {update.name('version')} + {update.val(1)}")
        return self._if_condition(lambda: self._db.update_item(TableName=self.name, Key=_key(source_pk(source), SOURCE_SK),
                                                               **update.kwargs(f"{path} = {update.val(old_pk)}")))

    def _if_condition(self, write: Any) -> bool:
        """Make a conditional write: True when it was made, False when its condition failed."""
        try:
            write()
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        self.writes += 1
        return True

    # --- merges under way ------------------------------------------------------------------------

    def merge_marker(self, person: str) -> dict[str, Any] | None:
        """The merge of `person` under way ({"into", "expires_at"}), or None (strongly consistent)."""
        item = self._db.get_item(TableName=self.name, Key=_key(merge_pk(person), MERGE_SK), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def put_merge_marker(self, person: str, into: str, expires_at: int, now: int, armed: bool) -> bool:
        """Mark `person` as being merged into `into`; False when an unexpired merge into someone else is marked."""
        return self._if_condition(lambda: self._db.put_item(
            TableName=self.name, Item=to_item({"pk": merge_pk(person), "sk": MERGE_SK, "into": into, "armed": armed,
                                               "expires_at": expires_at}),
            ConditionExpression="attribute_not_exists(pk) OR #into = :into OR #exp <= :now",
            ExpressionAttributeNames={"#into": "into", "#exp": "expires_at"},
            ExpressionAttributeValues={":into": value(into), ":now": value(now)}))

    def delete_merge_marker(self, person: str) -> None:
        self.delete_entry(merge_pk(person), MERGE_SK)

    # --- entries --------------------------------------------------------------------------------

    def put_entries(self, items: Iterable[dict[str, Any]]) -> None:
        self._batch([{"PutRequest": {"Item": to_item(item)}} for item in items])

    def delete_entries(self, keys: Iterable[tuple[str, str]]) -> None:
        self._batch([{"DeleteRequest": {"Key": _key(pk, sk)}} for pk, sk in keys])

    def put_entry(self, item: dict[str, Any]) -> None:
        self._db.put_item(TableName=self.name, Item=to_item(item))
        self.writes += 1

    def delete_entry(self, pk: str, sk: str) -> None:
        self._db.delete_item(TableName=self.name, Key=_key(pk, sk))
        self.writes += 1

    def query(self, pk: str, since: str | None = None, limit: int | None = None,
              start: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
        """One page of a partition's entries, newest first: (entries, the key to go on from, or None)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "ScanIndexForward": False, "ConsistentRead": True,
                                  "KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": value(pk)}}
        if since:
            kwargs["KeyConditionExpression"] += " AND sk >= :since"
            kwargs["ExpressionAttributeValues"][":since"] = value(since)
        if limit:
            kwargs["Limit"] = limit
        if start:
            kwargs["ExclusiveStartKey"] = _key(start["pk"], start["sk"])
        page = self._db.query(**kwargs)
        last = page.get("LastEvaluatedKey")
        return [from_item(i) for i in page.get("Items", [])], ({"pk": last["pk"]["S"], "sk": last["sk"]["S"]} if last else None)

    def entries(self, pk: str) -> Iterator[dict[str, Any]]:
        """Every entry of a partition, newest first."""
        start = None
        while True:
            items, start = self.query(pk, start=start)
            yield from items
            if start is None:
                return

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        for i in range(0, len(requests), BATCH):
            pending, wait = {self.name: requests[i:i + BATCH]}, 0.05
            while pending:
                pending = self._db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if pending:  # throttled: DynamoDB's advice is to back off before sending the rest
                    time.sleep(wait)
                    wait = min(wait * 2, 2.0)
        self.writes += len(requests)


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}
