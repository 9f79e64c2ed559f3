"""The face gallery in DynamoDB (hash `person`, range `image_key`) and its change log.

Items (bookkeeping partitions start with `#`, which no valid person name can):
- a face: `person`, `image_key`, `embedding` (128 float32 LE), `etag`, `enrolled_at`; never images;
- `#order/<image_key>`: the newest S3 event applied to that image (`sequencer`, `event_time`),
  whether it left a tombstone (`deleted`), and the log entry that made it (`log_seq`);
- `#meta/#version`: `version`, the sequence number of the newest change;
- `#log/<seq, 20 digits>`: one change: `op` (put | del), `face_person`, `face_key`, `etag`, and for
  a put `vector` (removed as soon as that face changes again);
- `#shard/<i>`: copies of `version` that recognitions read (one, at random), so no item is hot;
- `#snapshot/current`: where the newest snapshot is (see gallery_snapshot.py).
With a namespace (the unknown faces' store keeps 8 stores in one table) the bookkeeping partitions
are `#meta/p3`, `#order/p3`, `#log/p3`, `#shard/p3` and `#snapshot/p3`; face items are shared.

One change is one TransactWriteItems: the counter (conditional on the value read, so sequence
numbers have no gaps and log entries appear in order), the log entry, the order item (conditional
on the one read), the face, and every shard. A change either happened whole or not at all, so a
retried message repeats nothing and misses nothing. Changes to one image apply in S3's order
(sequencer, else eventTime); a stale event is skipped, and on a tie a deletion wins. A change a
command or a sweep makes (`unordered`: the unknown store's forgets and merges) is ordered by no
clock: it carries the stored face's own S3 event onward, a forget always applies (its tombstone
still stops a redelivery of that event), and a move applies only while the face is still stored,
conditional on the order item read, in the same transaction.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from shared.aws import dynamo
from shared.aws.clients import client, error_code
from shared.config import current_config

log = logging.getLogger(__name__)

META_PERSON, META_KEY = "#meta", "#version"
ORDER, LOG, SHARD, SNAPSHOT = "#order", "#log", "#shard", "#snapshot"
EMBEDDING_DTYPE = np.dtype("<f4")
EMBEDDING_BYTES = 128 * EMBEDDING_DTYPE.itemsize
CONFLICT_ATTEMPTS = 60


@dataclass(frozen=True)
class GalleryFace:
    """One enrolled image of one person."""

    person: str
    image_key: str
    embedding: np.ndarray  # (128,) float32
    etag: str = ""
    enrolled_at: str = ""


@dataclass(frozen=True)
class Change:
    """What one S3 event does to one image: enroll `embedding` (None: delete it)."""

    person: str
    image_key: str
    sequencer: str
    event_time: str
    etag: str = ""
    embedding: np.ndarray | None = None
    enrolled_at: str = ""
    wins_ties: bool = False  # an upload known to be newer than a tombstone of the same instant
    extra: dict[str, Any] | None = None  # more attributes of the face item (the unknown store's source, box, ...)
    unordered: bool = False  # a command's forget or move: no clock ordering (see the module docstring)
    live_in: str = ""  # an unordered move: the person the face is stored under now

    @property
    def deleted(self) -> bool:
        return self.embedding is None


@dataclass(frozen=True)
class Outcome:
    """What apply() did: `applied` (a new log entry `seq`), or `stale`/`repeat` (nothing to do)."""

    applied: bool
    seq: int = 0
    removed: bool = False  # a live face left the gallery (for a delete; kept for a repeat)
    stale: bool = False
    tie: bool = False  # stale only because a delete had the same instant (moto: no sequencer)
    previous_seq: int = 0  # the log entry of the face this change replaced or removed


@dataclass(frozen=True)
class LogEntry:
    seq: int
    op: str
    person: str
    image_key: str
    embedding: np.ndarray | None


def encode(embedding: np.ndarray) -> bytes:
    """128 float32 little-endian bytes."""
    array = np.asarray(embedding, dtype=EMBEDDING_DTYPE).reshape(-1)
    if array.size != 128:
        raise ValueError(f"an embedding has 128 values, not {array.size}")
    return array.tobytes()


def decode(data: bytes) -> np.ndarray:
    """The (128,) float32 embedding stored in `data`."""
    if len(data) != EMBEDDING_BYTES:
        raise ValueError(f"an embedding is {EMBEDDING_BYTES} bytes, not {len(data)}")
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)


def log_key(seq: int) -> str:
    return f"{seq:020d}"


def compare(a: tuple[str, str], b: tuple[str, str]) -> int:
    """Order of two events on one key, each (sequencer, eventTime): S3's sequencers (hex, left-padded)
    when both have one, else the event times. -1, 0 or 1."""
    if a[0] and b[0]:
        x, y = a[0].upper().rjust(32, "0"), b[0].upper().rjust(32, "0")
    else:
        x, y = a[1], b[1]
    return (x > y) - (x < y)


def _key(person: str, image_key: str) -> dict[str, Any]:
    return {"person": {"S": person}, "image_key": {"S": image_key}}


class GalleryTable:
    """Enrolled faces, by person and source image key, with their ordered change log."""

    def __init__(self, name: str, shards: int | None = None, snapshot_root: str = "gallery/snapshots/",
                 order_ttl_s: int = 0, namespace: str = "") -> None:
        self.name = name
        self.shards = max(1, current_config().pipeline.gallery_shards if shards is None else shards)
        self.snapshot_root = snapshot_root  # where this store's snapshots live in the bucket
        self.order_ttl_s = order_ttl_s  # >0: `#order` items expire (DynamoDB TTL `expires_at`) this long after their change
        self.namespace = namespace  # "": the table's one store; "p3": bookkeeping partitions `#log/p3`, ... (one of several)
        self.meta, self.order, self.log, self.shard, self.snapshot = (
            f"{base}/{namespace}" if namespace else base for base in (META_PERSON, ORDER, LOG, SHARD, SNAPSHOT))

    @property
    def ident(self) -> str:
        """This store's name in caches and messages: the table, and the namespace if any."""
        return f"{self.name}/{self.namespace}" if self.namespace else self.name

    # --- reading -----------------------------------------------------------------------------

    def get(self, person: str, image_key: str) -> dict[str, Any] | None:
        found = client("dynamodb").get_item(TableName=self.name, Key=_key(person, image_key), ConsistentRead=True)
        return dynamo.from_item(found["Item"]) if "Item" in found else None

    def has_faces(self, person: str) -> bool:
        """Whether any face of `person` is enrolled (one strongly consistent Query, one item at most)."""
        found = client("dynamodb").query(TableName=self.name, ConsistentRead=True, Limit=1, KeyConditionExpression="person = :p",
                                         ExpressionAttributeValues={":p": {"S": person}})
        return bool(found.get("Items"))

    def version(self) -> int:
        """The sequence number of the newest change (0 before the first)."""
        found = self.get(self.meta, META_KEY)
        return int(found.get("version", 0)) if found else 0

    def published_version(self) -> int:
        """The newest change, read from one shard at random (what recognitions poll)."""
        found = self.get(self.shard, str(random.randrange(self.shards)))
        return int(found.get("version", 0)) if found else 0

    def log_since(self, after: int, upto: int) -> list[LogEntry]:
        """Log entries after..upto, in order (strongly consistent, paginated)."""
        pages = client("dynamodb").get_paginator("query").paginate(
            TableName=self.name, ConsistentRead=True,
            KeyConditionExpression="person = :p AND image_key BETWEEN :a AND :b",
            ExpressionAttributeValues={":p": {"S": self.log}, ":a": {"S": log_key(after + 1)}, ":b": {"S": log_key(upto)}},
        )
        entries = []
        for page in pages:
            for raw in page.get("Items", []):
                item = dynamo.from_item(raw)
                vector = item.get("vector")
                entries.append(LogEntry(int(item["image_key"]), item["op"], item["face_person"], item["face_key"],
                                        decode(vector) if vector else None))
        return entries

    def face_items(self) -> Iterator[dict[str, Any]]:
        """Every face item of the table, as stored (a paginated, strongly consistent scan that skips
        the bookkeeping: tools, tests and sweeps, never the recognition path)."""
        pages = client("dynamodb").get_paginator("scan").paginate(TableName=self.name, ConsistentRead=True)
        for page in pages:
            for raw in page.get("Items", []):
                item = dynamo.from_item(raw)
                if not str(item.get("person", "#")).startswith("#"):
                    yield item

    def faces(self) -> Iterator[GalleryFace]:
        """Every enrolled face (see face_items)."""
        for item in self.face_items():
            try:
                yield _face(item)
            except (KeyError, ValueError) as exc:
                log.warning("skipping malformed gallery item %s/%s: %s", item.get("person"), item.get("image_key"), exc)

    # --- writing -----------------------------------------------------------------------------

    def apply(self, change: Change) -> Outcome:
        """Apply one event to one image, in S3's order, exactly once (see the module docstring)."""
        for attempt in range(CONFLICT_ATTEMPTS):
            order = self.get(self.order, change.image_key)
            live = False
            if change.unordered:
                live = self._live(change, order)
                decided = _decide_unordered(change, order, live)
            else:
                decided = _decide(change, order)
            if decided is not None:
                return decided
            version = self.version()
            try:
                self._commit(_stamped(change, order) if change.unordered else change, order, version)
            except Exception as exc:
                if error_code(exc) not in ("TransactionCanceledException", "TransactionConflictException"):
                    raise
                time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 10)))  # another change won: read again
                continue
            previous = int(order.get("log_seq", 0)) if order and not order.get("deleted") else 0
            return Outcome(True, version + 1, removed=change.deleted and (bool(previous) or live), previous_seq=previous)
        raise RuntimeError(f"gallery change of {change.image_key} kept conflicting; will be retried")

    def _live(self, change: Change, order: dict[str, Any] | None) -> bool:
        """Whether the face of an unordered change is stored: not a tombstone, and (for a move, or
        when the order item expired) its face item is there."""
        if order and order.get("deleted"):
            return False
        if order and change.deleted:
            return True
        holder = order.get("face_person") if order else (change.person if change.deleted else change.live_in)
        return self.get(holder, change.image_key) is not None

    def _commit(self, change: Change, order: dict[str, Any] | None, version: int) -> None:
        seq = version + 1
        entry = {"person": self.log, "image_key": log_key(seq), "op": "del" if change.deleted else "put",
                 "face_person": change.person, "face_key": change.image_key, "etag": change.etag}
        if not change.deleted:
            entry["vector"] = encode(change.embedding)  # type: ignore[arg-type]
        had_face = bool(order) and not order.get("deleted")  # type: ignore[union-attr]
        new_order = {"person": self.order, "image_key": change.image_key, "sequencer": change.sequencer or None,
                     "event_time": change.event_time, "deleted": change.deleted, "log_seq": seq,
                     "face_person": change.person, "etag": change.etag,
                     "removed": change.deleted and had_face,
                     "prev_log_seq": int(order.get("log_seq", 0)) if had_face else 0,  # type: ignore[union-attr]
                     "expires_at": int(time.time()) + self.order_ttl_s if self.order_ttl_s else None}
        items: list[dict[str, Any]] = [
            {"Update": {"TableName": self.name, "Key": _key(self.meta, META_KEY), "UpdateExpression": "SET #v = :new",
                        "ConditionExpression": "attribute_not_exists(#v) OR #v = :old",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":new": {"N": str(seq)}, ":old": {"N": str(version)}}}},
            {"Put": {"TableName": self.name, "Item": dynamo.to_item(entry),
                     "ConditionExpression": "attribute_not_exists(image_key)"}},
            {"Put": {"TableName": self.name, "Item": dynamo.to_item(new_order), **_same_order(order)}},
            *self._face_writes(change, order),
        ]
        items += [
            {"Update": {"TableName": self.name, "Key": _key(self.shard, str(i)), "UpdateExpression": "SET #v = :new",
                        "ExpressionAttributeNames": {"#v": "version"}, "ExpressionAttributeValues": {":new": {"N": str(seq)}}}}
            for i in range(self.shards)
        ]
        client("dynamodb").transact_write_items(TransactItems=items)

    def _face_writes(self, change: Change, order: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Put or delete the face item; a face that moves to another person (the unknown store's
        cluster merges) leaves its old item."""
        had = order.get("face_person") if order and not order.get("deleted") else (change.live_in or None)
        old = [{"Delete": {"TableName": self.name, "Key": _key(had, change.image_key)}}] if had and had != change.person else []
        if old and change.unordered and not change.deleted:  # a move: only of a face still stored (not expired meanwhile)
            old[0]["Delete"]["ConditionExpression"] = "attribute_exists(image_key)"
        if change.deleted:
            return old or [{"Delete": {"TableName": self.name, "Key": _key(change.person, change.image_key)}}]
        item = {**(change.extra or {}), "person": change.person, "image_key": change.image_key,
                "embedding": encode(change.embedding), "etag": change.etag, "enrolled_at": change.enrolled_at}  # type: ignore[arg-type]
        return [{"Put": {"TableName": self.name, "Item": dynamo.to_item(item)}}, *old]

    def put_face(self, face: GalleryFace, sequencer: str = "", event_time: str = "") -> Outcome:
        """Enroll `face` as an upload event would (event time: now, unless given)."""
        when = event_time or time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        return self.apply(Change(face.person, face.image_key, sequencer, when, face.etag, face.embedding, face.enrolled_at))

    def write_faces(self, people: list[str], keys: list[str], embeddings: np.ndarray, event_time: str) -> None:
        """Face and order items for a bulk import (BatchWriteItem, 25 a request)."""
        db, requests = client("dynamodb"), []
        for person, key, vector in zip(people, keys, embeddings):
            requests.append({"PutRequest": {"Item": dynamo.to_item(
                {"person": person, "image_key": key, "embedding": encode(vector), "etag": "", "enrolled_at": event_time})}})
            requests.append({"PutRequest": {"Item": dynamo.to_item(
                {"person": self.order, "image_key": key, "event_time": event_time, "deleted": False, "log_seq": 1,
                 "face_person": person, "etag": "", "removed": False, "prev_log_seq": 0})}})
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.name: requests[start:start + 25]}
            while pending:
                pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def start_counter(self, seq: int) -> None:
        """Set the counter and its shards of a new gallery (a bulk import's single change)."""
        db = client("dynamodb")
        db.put_item(TableName=self.name, Item=dynamo.to_item({"person": self.meta, "image_key": META_KEY, "version": seq}),
                    ConditionExpression="attribute_not_exists(image_key)")
        for i in range(self.shards):
            db.put_item(TableName=self.name, Item=dynamo.to_item({"person": self.shard, "image_key": str(i), "version": seq}))

    def strip_log_vector(self, seq: int) -> None:
        """Remove the embedding from log entry `seq` (its face changed since; idempotent)."""
        if seq <= 0:
            return
        try:
            client("dynamodb").update_item(
                TableName=self.name, Key=_key(self.log, log_key(seq)), UpdateExpression="REMOVE vector",
                ConditionExpression="attribute_exists(image_key)",
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":  # trimmed already
                raise

    def trim_log(self, upto: int, after: int = 0) -> int:
        """Delete log entries after..upto (entries a snapshot has made unnecessary)."""
        keys = [e.seq for e in self.log_since(after, upto)] if upto > after else []
        db = client("dynamodb")
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": _key(self.log, log_key(s))}} for s in keys[start:start + 25]]
            pending: dict[str, Any] = {self.name: requests}
            while pending:
                pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        return len(keys)

    def snapshot_pointer(self) -> dict[str, Any] | None:
        return self.get(self.snapshot, "current")

    def set_snapshot_pointer(self, pointer: dict[str, Any], replaces: int | None) -> bool:
        """Point at a new snapshot, only if the pointer still names snapshot `replaces` (None: none)."""
        condition = "attribute_not_exists(image_key)" if replaces is None else "#s = :old"
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if replaces is not None:
            kwargs["ExpressionAttributeNames"] = {"#s": "seq"}
            kwargs["ExpressionAttributeValues"] = {":old": {"N": str(replaces)}}
        try:
            client("dynamodb").put_item(TableName=self.name, Item=dynamo.to_item({"person": self.snapshot, "image_key": "current", **pointer}), **kwargs)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _decide(change: Change, order: dict[str, Any] | None) -> Outcome | None:
    """None when `change` must be applied; else why not (stale, or this very event again)."""
    if not order:
        return None
    mine, theirs = (change.sequencer, change.event_time), (order.get("sequencer") or "", order.get("event_time") or "")
    c = compare(mine, theirs)
    same = bool(order.get("deleted")) == change.deleted and (change.deleted or order.get("etag") == change.etag)
    if c > 0 or (c == 0 and not same and change.deleted):
        return None
    if c == 0 and same:
        return Outcome(False, int(order.get("log_seq", 0)), removed=bool(order.get("removed")),
                       previous_seq=int(order.get("prev_log_seq", 0)))
    if c == 0 and not change.deleted and order.get("deleted"):
        # A tie between an upload and a delete: the delete wins unless the caller saw the upload
        # is the one in S3 now.
        return None if change.wins_ties else Outcome(False, stale=True, tie=True)
    if c == 0:
        return None  # two uploads in one millisecond (moto): the later apply wins
    return Outcome(False, stale=True)


def _decide_unordered(change: Change, order: dict[str, Any] | None, live: bool) -> Outcome | None:
    """None when an unordered change must be applied: a forget unless the face is a tombstone
    already, a move only while the face is stored (a forgotten face is never brought back)."""
    if change.deleted and order and order.get("deleted"):
        return Outcome(False, int(order.get("log_seq", 0)))
    if not change.deleted and not live:
        return Outcome(False, stale=True)
    return None


def _stamped(change: Change, order: dict[str, Any] | None) -> Change:
    """An unordered change with the S3 event of the face it changes (the event time given when
    there is none), so that a redelivery of that event is stale after a forget, a repeat after a move."""
    if not order:
        return change
    return replace(change, sequencer=order.get("sequencer") or "", event_time=order.get("event_time") or change.event_time)


def _same_order(order: dict[str, Any] | None) -> dict[str, Any]:
    """The condition that the order item is still the one read."""
    if not order:
        return {"ConditionExpression": "attribute_not_exists(image_key)"}
    return {"ConditionExpression": "#l = :l", "ExpressionAttributeNames": {"#l": "log_seq"},
            "ExpressionAttributeValues": {":l": {"N": str(int(order.get("log_seq", 0)))}}}


def _face(item: dict[str, Any]) -> GalleryFace:
    return GalleryFace(
        person=item["person"],
        image_key=item["image_key"],
        embedding=decode(item["embedding"]),
        etag=item.get("etag", ""),
        enrolled_at=item.get("enrolled_at", ""),
    )
