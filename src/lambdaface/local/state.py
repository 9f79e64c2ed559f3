"""Saving and restoring the local stack's state: objects, table items, unprocessed messages.

Layout of the state directory:
    state.json        manifest: objects (key, blob, content type, metadata), items, messages
    blobs/<sha256>    object bytes, content-addressed, so a save only writes what is new
    logs/<Function>.log   the handlers' logs (written by the workers)
    credentials       remote mode: the stack's generated keys (local.keys)

The folder and its subfolders are the owner's only (0700), every file in them too (0600).

Objects and items go through the S3 and DynamoDB APIs. Messages are read from moto's SQS
backend in this process, because messages in flight (received, not yet deleted) are invisible
to ReceiveMessage; each keeps its body, attributes and receive count, so a message that already
failed twice still goes to the dead-letter queue after one more failure.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from lambdaface.local.files import write_atomic
from lambdaface.local.spec import ACCOUNT_ID, StackSpec

VERSION = 1


def _map_binary(value: Any, convert: Callable[[Any], Any]) -> Any:
    """`value` (DynamoDB's wire format) with `convert` applied to every binary value (B and BS)."""
    if isinstance(value, list):
        return [_map_binary(v, convert) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for kind, v in value.items():
        if kind == "B":
            out[kind] = convert(v)
        elif kind == "BS":
            out[kind] = [convert(b) for b in v]
        else:
            out[kind] = _map_binary(v, convert)
    return out


def _encode(value: Any) -> Any:
    """DynamoDB's wire format, JSON-safe: binary values as base64 text."""
    return _map_binary(value, lambda b: base64.b64encode(b).decode())


def _decode(value: Any) -> Any:
    """The inverse of `_encode`."""
    return _map_binary(value, base64.b64decode)


def _message_attributes(attributes: dict[str, Any], encode: bool) -> dict[str, Any]:
    """Message attributes with binary values as base64 text (encode) or bytes again."""
    code = (lambda b: base64.b64encode(b).decode()) if encode else base64.b64decode
    return {
        name: {k: code(v) if k == "BinaryValue" else v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in (attributes or {}).items()
    }


def _sqs_queue(spec: StackSpec, logical_id: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[ACCOUNT_ID][spec.region].queues[spec.queues[logical_id].name]


def restrict(state_dir: Path) -> None:
    """Make the state folder the owner's only: folders 0700, files 0600 (an older stack's too)."""
    os.chmod(state_dir, 0o700)
    for folder in (state_dir, state_dir / "blobs", state_dir / "logs"):
        if not folder.is_dir():
            continue
        os.chmod(folder, 0o700)
        for entry in folder.iterdir():
            if entry.is_file() and not entry.is_symlink():
                os.chmod(entry, 0o600)


def save(state_dir: Path, spec: StackSpec, s3: Any, dynamodb: Any) -> dict[str, int]:
    """Write the stack's state under `state_dir`; returns what was saved, counted."""
    blobs = state_dir / "blobs"
    blobs.mkdir(mode=0o700, parents=True, exist_ok=True)
    objects = _save_objects(blobs, _read_manifest(state_dir), spec, s3)
    items = {lid: [_encode(item) for page in dynamodb.get_paginator("scan").paginate(TableName=table.name)
                   for item in page.get("Items", [])]
             for lid, table in spec.tables.items()}
    messages = {lid: _queue_messages(spec, lid) for lid in spec.queues}
    manifest = {"version": VERSION, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "objects": objects, "items": items, "messages": messages}
    write_atomic(state_dir / "state.json", json.dumps(manifest, indent=1).encode())
    referenced = {o["blob"] for o in objects}
    for blob in blobs.iterdir():
        if blob.name not in referenced and not blob.name.startswith("."):
            blob.unlink()
    return {"objects": len(objects), "items": sum(len(v) for v in items.values()),
            "messages": sum(len(v) for v in messages.values())}


def _save_objects(blobs: Path, old: dict[str, Any] | None, spec: StackSpec, s3: Any) -> list[dict[str, Any]]:
    """Every object of the bucket, its bytes in `blobs/` (downloaded only when not saved before)."""
    known = {(o["key"], o["etag"]): o for o in old.get("objects", [])} if old else {}
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket):
        for entry in page.get("Contents", []):
            key, etag = entry["Key"], entry["ETag"].strip('"')
            written = entry["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ")  # for the lifecycle rules (local.expiry)
            saved = known.get((key, etag))
            if saved and (blobs / saved["blob"]).exists():
                objects.append({**saved, "last_modified": written})
                continue
            try:
                response = s3.get_object(Bucket=spec.bucket, Key=key)
            except s3.exceptions.NoSuchKey:
                continue  # deleted since the listing (a replaced gallery snapshot): nothing to save
            data = response["Body"].read()
            digest = hashlib.sha256(data).hexdigest()
            if not (blobs / digest).exists():
                write_atomic(blobs / digest, data)
            objects.append({"key": key, "etag": etag, "blob": digest,
                            "content_type": response.get("ContentType", "binary/octet-stream"),
                            "metadata": response.get("Metadata", {}), "last_modified": written})
    return objects


def _queue_messages(spec: StackSpec, logical_id: str) -> list[dict[str, Any]]:
    """Every message of a queue, in flight ones too, with its receive count."""
    return [{"body": m.body, "attributes": _message_attributes(m.message_attributes, encode=True),
             "receive_count": m.approximate_receive_count}
            for m in list(_sqs_queue(spec, logical_id)._messages)]


def restore_objects(state_dir: Path, spec: StackSpec, s3: Any) -> int:
    """Put the saved objects back (call before the bucket notifications exist: no events)."""
    manifest = _read_manifest(state_dir)
    if not manifest:
        return 0
    for o in manifest["objects"]:
        s3.put_object(
            Bucket=spec.bucket,
            Key=o["key"],
            Body=(state_dir / "blobs" / o["blob"]).read_bytes(),
            ContentType=o["content_type"],
            Metadata=o["metadata"],
        )
        if o.get("last_modified"):  # the object keeps its age: lifecycle rules count from its writing
            _s3_object(spec, o["key"]).last_modified = datetime.strptime(o["last_modified"], "%Y-%m-%dT%H:%M:%SZ")
    return len(manifest["objects"])


def _s3_object(spec: StackSpec, key: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT_ID]["aws"].get_bucket(spec.bucket).keys[key]


def restore_items_and_messages(state_dir: Path, spec: StackSpec, sqs: Any, dynamodb: Any) -> tuple[int, int]:
    """Put the saved items and unprocessed messages back; returns their counts."""
    manifest = _read_manifest(state_dir)
    if not manifest:
        return 0, 0
    n_items = 0
    for lid, items in manifest["items"].items():
        if lid not in spec.tables:
            continue
        for item in items:
            dynamodb.put_item(TableName=spec.tables[lid].name, Item=_decode(item))
            n_items += 1
    n_messages = 0
    for lid, messages in manifest["messages"].items():
        if lid not in spec.queues:
            continue
        url = sqs.get_queue_url(QueueName=spec.queues[lid].name)["QueueUrl"]
        for m in messages:
            sent = sqs.send_message(QueueUrl=url, MessageBody=m["body"], MessageAttributes=_message_attributes(m["attributes"], encode=False))
            if m["receive_count"]:
                for message in _sqs_queue(spec, lid)._messages:
                    if message.id == sent["MessageId"]:
                        message.approximate_receive_count = int(m["receive_count"])
            n_messages += 1
    return n_items, n_messages


def _read_manifest(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: state version {manifest.get('version')} is not {VERSION}")
    return manifest
