"""Coalesced purges: a forgotten face leaves every gallery snapshot within a stated bound, and a
burst of forgets costs one snapshot rewrite (or a few), not one each.

A forget writes its change at once (from then on no recognition matches the face: the change's
transaction updated every counter shard) and its result; the face's embedding is then still in
the published snapshot. `request` records that a purge is pending in the `#purge/pending` item:
`upto` (the newest change whose removed face must leave the snapshots), `token` (the one purge
message that owns it) and `due`. The first forget of a burst creates the item and sends that
message to the enroll queue, delayed `delay_s` (SQS DelaySeconds); later forgets only raise
`upto`. The message (`run`) publishes one snapshot of the newest gallery (gallery_cache.compact,
which then deletes every older snapshot) and clears the item unless a newer forget raised `upto`
meanwhile; then it compacts again, at most ROUNDS times (fewer when the invocation has not twice
the last compaction's time left), and else re-arms: a new token, a new delayed message.

Bound (docs/SECURITY.md): a forgotten face is in no snapshot later than `delay_s` + ROUNDS x (one
snapshot write) + queue pick-up after its forget, while the enroll function runs; a purge message
that fails comes back after the queue's visibility timeout. A message that was never sent (the
forget stopped between the item and the send) is re-sent by the next forget once `due` is
OVERDUE_S past, or by the forget's own redelivery.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from shared.aws import dynamo, gallery_cache
from shared.aws.clients import client, error_code
from shared.aws.gallery_table import GalleryTable

log = logging.getLogger(__name__)

PURGE, PENDING = "#purge", "pending"
KIND = "lambdaface.gallery-purge"  # the message body's `kind`
ROUNDS = 3  # compactions one purge message runs before it re-arms
OVERDUE_S = 240  # a pending purge whose message should have run this long ago: send a new one
MAX_DELAY_S = 900  # SQS's DelaySeconds limit


@dataclass(frozen=True)
class PurgeMessage:
    bucket: str
    token: str


def _key(table: GalleryTable) -> dict[str, Any]:
    partition = f"{PURGE}/{table.namespace}" if table.namespace else PURGE
    return {"person": {"S": partition}, "image_key": {"S": PENDING}}


def pending(table: GalleryTable) -> dict[str, Any] | None:
    """The pending purge (strongly consistent), or None."""
    found = client("dynamodb").get_item(TableName=table.name, Key=_key(table), ConsistentRead=True)
    return dynamo.from_item(found["Item"]) if "Item" in found else None


def message_body(bucket: str, token: str) -> str:
    return json.dumps({"kind": KIND, "bucket": bucket, "token": token})


def parse(body: str) -> PurgeMessage | None:
    """The purge message in an SQS body, or None when it is something else (an S3 event)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return None
    return PurgeMessage(str(data.get("bucket", "")), str(data.get("token", "")))


def request(table: GalleryTable, bucket: str, queue_url: str, seq: int, delay_s: int) -> None:
    """Change `seq` removed a face the published snapshot holds: make sure a purge covers it
    (idempotent: a redelivered forget calls it again)."""
    db = client("dynamodb")
    for _ in range(10):
        token, due = uuid.uuid4().hex, int(time.time()) + delay_s
        try:
            db.put_item(TableName=table.name, Item={**_key(table), **dynamo.to_item({"upto": seq, "token": token, "due": due})},
                        ConditionExpression="attribute_not_exists(image_key)")
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        else:
            _send(queue_url, bucket, token, delay_s)  # the first forget of a burst
            return
        try:
            db.update_item(TableName=table.name, Key=_key(table), UpdateExpression="SET upto = :s",
                           ConditionExpression="attribute_exists(upto) AND upto < :s",
                           ExpressionAttributeValues={":s": {"N": str(seq)}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        current = pending(table)
        if current is None:
            continue  # cleared meanwhile, perhaps before our change: create it again
        if int(current["upto"]) >= seq:
            if time.time() > int(current.get("due", 0)) + OVERDUE_S:
                _rearm(table, bucket, queue_url, str(current["token"]), delay_s)
            return
    raise RuntimeError(f"could not record the pending purge of {table.ident}")


def run(table: GalleryTable, bucket: str, queue_url: str, token: str, delay_s: int,
        time_left_s: Callable[[], float] | None = None) -> int:
    """Handle one purge message: compact until no pending purge is newer than the published
    snapshot (at most ROUNDS times, and another only while `time_left_s()` leaves twice the last
    one's time; else re-arm). Returns the compactions run."""
    last_s, done = 0.0, 0
    for rounds in range(ROUNDS):
        current = pending(table)
        if current is None or current.get("token") != token:
            return rounds  # done already, or another message owns it now
        if rounds and time_left_s is not None and time_left_s() < 2 * last_s:
            break  # the invocation would time out: a new message goes on with it
        started = time.monotonic()
        gallery_cache.compact(table, bucket)
        gallery_cache.finish_compaction(table, force=True)
        done += 1
        published = gallery_cache.snapshot_seq(table)
        try:
            client("dynamodb").delete_item(
                TableName=table.name, Key=_key(table), ConditionExpression="#t = :t AND upto <= :p",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":t": {"S": token}, ":p": {"N": str(published)}})
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            last_s = time.monotonic() - started
            continue  # a newer forget raised `upto` meanwhile
        log.info("gallery purge of %s done at change %d after %d compaction(s)", table.ident, published, rounds + 1)
        return done
    _rearm(table, bucket, queue_url, token, delay_s)
    return done


def _rearm(table: GalleryTable, bucket: str, queue_url: str, token: str, delay_s: int) -> None:
    """Give the pending purge to a new message (only if `token` still owns it)."""
    new = uuid.uuid4().hex
    try:
        client("dynamodb").update_item(
            TableName=table.name, Key=_key(table), UpdateExpression="SET #t = :n, due = :d",
            ConditionExpression="#t = :t", ExpressionAttributeNames={"#t": "token"},
            ExpressionAttributeValues={":n": {"S": new}, ":t": {"S": token}, ":d": {"N": str(int(time.time()) + delay_s)}})
    except Exception as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        return  # cleared, or re-armed by someone else
    _send(queue_url, bucket, new, delay_s)


def _send(queue_url: str, bucket: str, token: str, delay_s: int) -> None:
    client("sqs").send_message(QueueUrl=queue_url, MessageBody=message_body(bucket, token),
                               DelaySeconds=max(0, min(MAX_DELAY_S, delay_s)))
