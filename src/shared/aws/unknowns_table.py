"""The unknown faces recognitions remember (opt-in), grouped into clusters: the gallery's design reused.

The store is the gallery's design in a table of its own (UNKNOWNS_TABLE): `partitions` GalleryTable
stores side by side (bookkeeping `#log/p3`, ...; snapshots under `unknowns/snapshots/p3/`), each
loaded by recognitions exactly like the gallery: a snapshot, then the change log since. In it a
face's `person` is its cluster id and its `image_key` the face id `<source key>#<etag>#<n>`; the
face item also keeps `source`, `box`, `t` (seconds into a video), `seen_at` and `expires_at` (DynamoDB
TTL: `seen_at` + the retention + TTL_MARGIN_S, a backstop to the hourly sweep, which forgets a face at
its retention; a face whose item the TTL removed is forgotten from the log and the snapshots by the
next sweep). Every change (a face remembered, moved by a merge, forgotten) goes through the change
log, so no worker keeps a forgotten face. Bookkeeping items hold no embedding and expire (DynamoDB TTL, `expires_at`):
- `#merged/<id>`: `into`, the cluster it was merged into (an id in an old result still resolves);
- `#named/<id>`: `name`, `named_at`: the cluster became enrollments of the person `name`;
- `#regrouped/last`: `at`, when the sweep's last re-grouping started (the next looks at what is newer).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from shared import clock
from shared.aws import dynamo, gallery_cache
from shared.aws.clients import client, error_code
from shared.aws.gallery_table import Change, GalleryTable, Outcome, decode
from shared.config import current_config
from shared.engine.matching import Gallery

SNAPSHOT_ROOT = "unknowns/snapshots/"
PARTITIONS = 8  # change logs side by side: a fixed number, so every reader and writer agrees where a face is
MERGED, NAMED, REGROUPED = "#merged", "#named", "#regrouped"
TTL_MARGIN_S = 86400  # a face item expires (DynamoDB TTL) this long after its retention: the sweep is first
ORDER_TTL_S = 15 * 86400  # a face's `#order` item (its source key and cluster id, no embedding) outlives
# the longest an SQS message can be redelivered (14 days), then expires


@dataclass(frozen=True)
class UnknownFace:
    """One remembered face: where it was seen and its cluster."""

    face_id: str
    cluster: str
    source: str
    box: dict[str, int]
    seen_at: str
    t: float | None = None  # seconds into a video; None for a photo
    embedding: np.ndarray | None = field(default=None, repr=False)
    etag: str = ""
    partition: int | None = None  # which change log holds it (None: a face not stored yet)
    expires_at: int | None = None  # its item's TTL (None: a face not stored yet)


def face_id(source: str, etag: str, n: str) -> str:
    """The id of face `n` of one version (etag) of `source`."""
    return f"{source}#{etag}#{n}"


def now_iso() -> str:
    return clock.iso(clock.now())


class UnknownStore:
    """Remembered unknown faces by cluster, their merges and namings, in `partitions` independent
    change logs (a face's partition: a hash of its id, kept on its item), so that recognitions
    writing unknown faces at once do not all contend for one change counter."""

    def __init__(self, table_name: str, bucket: str, shards: int | None = None, partitions: int = PARTITIONS,
                 retention_days: int | None = None) -> None:
        self.name = table_name
        self.bucket = bucket
        self.retention_days = retention_days  # None: the configured UnknownRetentionDays
        self.partitions = [
            GalleryTable(table_name, shards, f"{SNAPSHOT_ROOT}p{i}/", ORDER_TTL_S, namespace=f"p{i}")
            for i in range(max(1, partitions))]
        self._changed: dict[int, list[Outcome]] = {}

    def partition_of(self, face: UnknownFace) -> int:
        """Where `face` lives: the partition on its item, else (a new face) a hash of its id."""
        if face.partition is not None:
            return face.partition
        return zlib.crc32(face.face_id.encode()) % len(self.partitions)

    # --- faces -------------------------------------------------------------------------------

    def galleries(self) -> list[Gallery]:
        """Every remembered face, as one Gallery per partition whose `person` is the cluster id
        (each a snapshot, then its log; one BatchGetItem to learn what changed)."""
        return gallery_cache.load_all(self.partitions)

    def remember(self, face: UnknownFace, sequencer: str, event_time: str) -> Outcome:
        """Store `face`, ordered by the recognition's S3 event (a redelivered message repeats nothing)."""
        return self._apply(face, Change(face.cluster, face.face_id, sequencer, event_time, face.etag, face.embedding,
                                        face.seen_at, extra=self._extra(face)))

    def move(self, face: UnknownFace, cluster: str) -> Outcome:
        """Move `face` (stored under face.cluster) into `cluster` (a merge): only while it is still
        stored, checked in the move's own transaction (stale when it was forgotten meanwhile)."""
        return self._apply(face, Change(cluster, face.face_id, "", now_iso(), face.etag, face.embedding, face.seen_at,
                                        extra=self._extra(face), unordered=True, live_in=face.cluster))

    def delete(self, face: UnknownFace) -> Outcome:
        """Forget `face`, whatever this machine's clock says (no ordering against recognitions);
        its tombstone keeps the S3 event that stored it, so a late redelivery cannot bring it back."""
        return self._apply(face, Change(face.cluster, face.face_id, "", now_iso(), unordered=True))

    def forget_orphans(self, index: int, orphans: dict[str, str]) -> int:
        """Forget faces that partition `index`'s gallery holds but whose item is gone ({face id:
        cluster}: DynamoDB's TTL removed the item, so no change did): a tombstone through the change
        log, every log entry's vector of them stripped, and a snapshot without them published (the
        older ones deleted). A face found stored again (it moved while the caller scanned) or
        forgotten meanwhile is left alone. Returns how many were forgotten."""
        table, forgotten = self.partitions[index], set()
        for key, cluster in orphans.items():
            order = table.get(table.order, key)
            if order and order.get("deleted"):
                continue
            holder = (order.get("face_person") or cluster) if order else cluster
            if table.get(holder, key) is not None:
                continue
            table.apply(Change(cluster, key, "", now_iso(), unordered=True))
            forgotten.add(key)
        if forgotten:
            for entry in table.log_since(0, table.version()):
                if entry.image_key in forgotten and entry.embedding is not None:
                    table.strip_log_vector(entry.seq)
            gallery_cache.compact(table, self.bucket)
        return len(forgotten)

    def _apply(self, face: UnknownFace, change: Change) -> Outcome:
        index = self.partition_of(face)
        outcome = self.partitions[index].apply(change)
        self._changed.setdefault(index, []).append(outcome)
        return outcome

    def settle(self, compact_every: int) -> None:
        """After changes: strip replaced embeddings from each changed partition's log and compact it
        when due, or at once when a forgotten face is in its published snapshot."""
        changed, self._changed = self._changed, {}
        for index, outcomes in sorted(changed.items()):
            gallery_cache.after_changes(self.partitions[index], self.bucket, outcomes, compact_every)

    def _extra(self, face: UnknownFace) -> dict[str, Any]:
        return {"source": face.source, "box": face.box, "t": face.t, "seen_at": face.seen_at,
                "partition": self.partition_of(face), "expires_at": self.expires_at(face)}

    def expires_at(self, face: UnknownFace) -> int:
        """When DynamoDB's TTL deletes `face`'s item: kept through a merge, else a day after its retention."""
        if face.expires_at is not None:
            return face.expires_at
        days = self.retention_days if self.retention_days is not None else current_config().pipeline.unknown_retention_days
        return int(seen_epoch(face)) + days * 86400 + TTL_MARGIN_S

    def faces(self, embeddings: bool = False) -> Iterator[UnknownFace]:
        """Every remembered face (a scan: tools and the sweep, never the recognition path)."""
        for item in self.partitions[0].face_items():  # the face items are shared by every partition
            yield _face(item, embeddings)

    def cluster_faces(self, cluster: str, embeddings: bool = False) -> list[UnknownFace]:
        """The faces stored under one cluster id (a Query on its partition)."""
        pages = client("dynamodb").get_paginator("query").paginate(
            TableName=self.name, ConsistentRead=True, KeyConditionExpression="person = :p",
            ExpressionAttributeValues={":p": {"S": cluster}})
        return [_face(dynamo.from_item(raw), embeddings) for page in pages for raw in page.get("Items", [])]

    def wipe(self, time_left: Callable[[], bool] = lambda: True) -> tuple[int, bool]:
        """Delete every item of the table and every snapshot: (faces deleted, whether all was done).
        Only while remembering is off: then no worker reads or writes the store (switching it on
        again changes the functions' environment, so Lambda starts new ones, without a cached store)."""
        db, faces, complete = client("dynamodb"), 0, True
        pages = db.get_paginator("scan").paginate(TableName=self.name, ProjectionExpression="person, image_key")
        for page in pages:
            keys = page.get("Items", [])
            faces += sum(1 for k in keys if not k["person"]["S"].startswith("#"))
            for start in range(0, len(keys), 25):
                pending: dict[str, Any] = {self.name: [{"DeleteRequest": {"Key": k}} for k in keys[start:start + 25]]}
                while pending:
                    pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not time_left():
                complete = False
                break
        s3 = client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=SNAPSHOT_ROOT):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        return faces, complete

    # --- merges and names --------------------------------------------------------------------

    def records(self, partition: str) -> list[dict[str, Any]]:
        """Every bookkeeping item of `partition` (MERGED or NAMED)."""
        pages = client("dynamodb").get_paginator("query").paginate(
            TableName=self.name, ConsistentRead=True, KeyConditionExpression="person = :p",
            ExpressionAttributeValues={":p": {"S": partition}})
        return [dynamo.from_item(raw) for page in pages for raw in page.get("Items", [])]

    def record_keys(self, partition: str) -> list[str]:
        return [item["image_key"] for item in self.records(partition)]

    def delete_record(self, partition: str, item_key: str) -> None:
        client("dynamodb").delete_item(TableName=self.name,
                                       Key=dynamo.to_item({"person": partition, "image_key": item_key}))

    def aliases(self) -> dict[str, str]:
        """{retired cluster id: the id it was merged into}."""
        return {item["image_key"]: item["into"] for item in self.records(MERGED)}

    def resolve(self, cluster: str, aliases: dict[str, str] | None = None) -> str:
        """The id `cluster` goes by now (following merges)."""
        aliases = self.aliases() if aliases is None else aliases
        seen = {cluster}
        while cluster in aliases and aliases[cluster] not in seen:
            cluster = aliases[cluster]
            seen.add(cluster)
        return cluster

    def record_merge(self, retired: str, into: str, keep_days: int) -> None:
        self._put({"person": MERGED, "image_key": retired, "into": into, "merged_at": now_iso()}, keep_days)

    def named(self, cluster: str) -> dict[str, Any] | None:
        """The `#named` item ({"name", "named_at", ...}) when `cluster` was named."""
        return self._get(NAMED, cluster)

    def mark_named(self, cluster: str, person: str, keep_days: int) -> bool:
        """Record that `cluster` is `person`; False when it was named already."""
        try:
            self._put({"person": NAMED, "image_key": cluster, "name": person, "named_at": now_iso()}, keep_days,
                      condition="attribute_not_exists(image_key)")
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def unmark_named(self, cluster: str) -> None:
        self.delete_record(NAMED, cluster)

    def regrouped_at(self) -> str:
        """When the last re-grouping started ("" if none did, or its record expired)."""
        found = self._get(REGROUPED, "last")
        return str(found.get("at", "")) if found else ""

    def set_regrouped_at(self, at: str, keep_days: int) -> None:
        self._put({"person": REGROUPED, "image_key": "last", "at": at}, keep_days)

    def _get(self, partition: str, item_key: str) -> dict[str, Any] | None:
        return self.partitions[0].get(partition, item_key)  # GalleryTable.get: any item of the table

    def _put(self, item: dict[str, Any], keep_days: int, condition: str | None = None) -> None:
        item = {**item, "expires_at": int(clock.now()) + keep_days * 86400}
        kwargs = {"ConditionExpression": condition} if condition else {}
        client("dynamodb").put_item(TableName=self.name, Item=dynamo.to_item(item), **kwargs)


def seen_epoch(face: UnknownFace) -> float:
    """When `face` was remembered, in seconds since the epoch (now, for an item without a valid `seen_at`)."""
    try:
        return clock.epoch(face.seen_at)
    except ValueError:
        return clock.now()


def _face(item: dict[str, Any], embeddings: bool) -> UnknownFace:
    return UnknownFace(
        face_id=item["image_key"], cluster=item["person"], source=item.get("source", ""),
        box={k: int(v) for k, v in (item.get("box") or {}).items()}, seen_at=item.get("seen_at", ""),
        t=item.get("t"), embedding=decode(item["embedding"]) if embeddings else None, etag=item.get("etag", ""),
        partition=int(item.get("partition", 0)),
        expires_at=int(item["expires_at"]) if item.get("expires_at") is not None else None,
    )
