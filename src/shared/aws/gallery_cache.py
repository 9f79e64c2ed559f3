"""The gallery a worker matches against: a snapshot loaded once, then only the changes since.

`load(table)` (every recognition): one strongly consistent GetItem of one `#shard` item, picked at
random; when it names a newer sequence number, one Query of the log entries in between, applied in
order. Freshness: a recognition that starts after a change's result was written sees the change
(the shards are written in the change's own transaction). No scan, ever. When the log no longer
holds the entries a worker needs (trimmed after a newer snapshot), it loads that snapshot.

`compact(table, bucket)` writes a new snapshot from this worker's up-to-date gallery, publishes it,
then deletes the previous snapshot and the log entries older than it. The enroll function runs
it after `compact_every` changes, and when a change removed a face that the published snapshot
holds: through a coalesced purge (gallery_purge.py) where the enroll queue is known, else at once.
Racing compactions end with a snapshot at least as new as each one's changes (see compact).
"""
from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.aws import gallery_snapshot
from shared.aws.clients import client
from shared.aws.gallery_table import GalleryTable, LogEntry, Outcome
from shared.engine.matching import Gallery

log = logging.getLogger(__name__)


@dataclass
class _State:
    gallery: Gallery
    seq: int


_states: dict[str, _State] = {}
_lock = threading.RLock()


def load(table: GalleryTable) -> Gallery:
    """The current gallery of `table` (see the module docstring)."""
    return _load(table, table.published_version())


def load_all(tables: list[GalleryTable]) -> list[Gallery]:
    """The current galleries of several stores in one table (one BatchGetItem of a shard of each)."""
    targets = published_versions(tables)
    return [_load(table, target) for table, target in zip(tables, targets)]


def published_versions(tables: list[GalleryTable]) -> list[int]:
    """A random counter shard of each store, read in one strongly consistent BatchGetItem."""
    keys = [(t.shard, str(random.randrange(t.shards))) for t in tables]
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(keys), 100):
        request = {tables[0].name: {"ConsistentRead": True, "Keys": [
            {"person": {"S": p}, "image_key": {"S": k}} for p, k in keys[start:start + 100]]}}
        while request:
            response = client("dynamodb").batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(tables[0].name, []):
                found[(item["person"]["S"], item["image_key"]["S"])] = int(item["version"]["N"])
            request = response.get("UnprocessedKeys") or {}
    return [found.get(key, 0) for key in keys]


def _load(table: GalleryTable, target: int) -> Gallery:
    with _lock:
        state = _states.get(table.ident) or _cold(table)
        if target > state.seq and not _catch_up(table, state, target):
            state = _cold(table)
            if target > state.seq and not _catch_up(table, state, target):
                raise RuntimeError(f"gallery log of {table.ident} is missing entries up to {target}")
        _states[table.ident] = state
        return state.gallery


def forget_cache() -> None:
    """Drop every cached gallery (tests; a process that must not keep embeddings)."""
    with _lock:
        _states.clear()


def drop(table: GalleryTable) -> None:
    """Drop this worker's copy of `table`'s gallery (the enroll function keeps none between jobs:
    it needs one only to compact, and a kept copy would hold forgotten faces until the next)."""
    with _lock:
        _states.pop(table.ident, None)


def cached() -> set[str]:
    """The stores this worker holds a gallery of (GalleryTable.ident)."""
    with _lock:
        return set(_states)


def _cold(table: GalleryTable) -> _State:
    """The published snapshot (or an empty gallery), at its sequence number."""
    for _ in range(3):
        pointer = table.snapshot_pointer()
        if not pointer:
            return _State(Gallery(), 0)
        try:
            gallery, seq = gallery_snapshot.read(pointer["bucket"], pointer["prefix"])
            return _State(gallery, seq)
        except Exception as exc:  # replaced and deleted while we read it: read the new pointer
            if table.snapshot_pointer() == pointer:
                raise
            log.info("snapshot %s replaced while loading (%s); loading the new one", pointer["prefix"], exc)
    raise RuntimeError("the gallery snapshot kept changing while loading it")


def _catch_up(table: GalleryTable, state: _State, target: int) -> bool:
    """Apply log entries state.seq+1..target; False when some are gone (trimmed)."""
    entries = table.log_since(state.seq, target)
    if [e.seq for e in entries] != list(range(state.seq + 1, target + 1)):
        return False
    for entry in entries:
        apply_entry(state.gallery, entry)
    state.seq = target
    return True


def apply_entry(gallery: Gallery, entry: LogEntry) -> None:
    """One change: a put with its embedding enrolls; a delete, or a put whose embedding was stripped
    (that face changed again later), removes."""
    if entry.op == "put" and entry.embedding is not None:
        gallery.put(entry.image_key, entry.person, entry.embedding)
    else:
        gallery.remove(entry.image_key)


def snapshot_seq(table: GalleryTable) -> int:
    pointer = table.snapshot_pointer()
    return int(pointer["seq"]) if pointer else 0


def compact(table: GalleryTable, bucket: str) -> int | None:
    """Publish a snapshot of the current gallery; returns its sequence number (None: one at least
    as new was already published). On return the published snapshot is at least as new as every
    change this worker saw, so it holds no face those changes removed.

    Two compactions at once: the pointer is replaced only if it still names the snapshot read.
    A worker that loses to an OLDER snapshot (one still holding a face its own changes removed)
    publishes its own over the winner, without writing it again; one that loses to a newer (or
    as new) snapshot deletes its copy."""
    with _lock:
        old = table.snapshot_pointer()
        gallery = load(table)
        seq = _states[table.ident].seq
        old_seq = int(old["seq"]) if old else None
        if old_seq is not None and old_seq >= seq:
            return None
        prefix = gallery_snapshot.new_prefix(seq, table.snapshot_root)
        pointer = gallery_snapshot.pointer(seq, bucket, prefix, 0)
        try:
            pointer["rows"] = gallery_snapshot.write(bucket, prefix, gallery, seq)
            published = _publish(table, pointer, old_seq)
        except BaseException:
            _try(gallery_snapshot.delete, bucket, prefix)  # never leave an unpublished copy behind
            raise
        if not published:
            gallery_snapshot.delete(bucket, prefix)  # a snapshot at least as new was published first
            return None
    log.info("gallery snapshot %s: %d faces at change %d", prefix, pointer["rows"], seq)
    finish_compaction(table)
    return seq


PUBLISH_ATTEMPTS = 20


def _publish(table: GalleryTable, pointer: dict[str, Any], replaces: int | None) -> bool:
    """Point at `pointer`'s snapshot, replacing the one at `replaces`; when another worker
    published meanwhile, replace that one too if it is older. False: the published one is at least
    as new as ours."""
    for _ in range(PUBLISH_ATTEMPTS):
        candidate = {**pointer, "dirty": True, "previous_seq": replaces or 0}
        if table.set_snapshot_pointer(candidate, replaces):
            return True
        current = table.snapshot_pointer()
        if current is None:
            raise RuntimeError(f"the snapshot pointer of {table.ident} disappeared")
        if int(current["seq"]) >= int(pointer["seq"]):
            return False
        replaces = int(current["seq"])  # an older snapshot won: ours replaces it
    raise RuntimeError(f"could not publish the snapshot of {table.ident}: the pointer kept changing")


def after_changes(table: GalleryTable, bucket: str, outcomes: list[Outcome], compact_every: int,
                  purge_now: bool = True) -> bool:
    """After applied changes: remove each replaced face's embedding from the log, finish an earlier
    compaction, and compact when `compact_every` changes have piled up or when a change removed a
    face the published snapshot holds (its embedding leaves S3 now). With `purge_now` False, such
    a purge is left to the caller (gallery_purge: coalesced), and True is returned when one is
    needed. Every step is idempotent, and a repeated change (a redelivered message) repeats them,
    in case the first delivery stopped half-way."""
    applied = [o for o in outcomes if not o.stale and o.seq]
    for outcome in applied:
        table.strip_log_vector(outcome.previous_seq)
    if not applied:
        return False
    finish_compaction(table)
    published = snapshot_seq(table)
    newest = max(o.seq for o in applied)
    due = newest - published >= compact_every
    purge = any(0 < o.previous_seq <= published < o.seq for o in applied)
    if due or (purge and purge_now):
        compact(table, bucket)  # covers every change this worker saw (see compact)
        return False
    return purge


def finish_compaction(table: GalleryTable, force: bool = False) -> None:
    """Delete every snapshot older than the published one (replaced, or left by a compaction that
    failed half-way) and the log entries older than the snapshot it replaced. Idempotent: the
    enroll function calls it after every change, so a crash here is repaired by the next one.
    `force`: look for older snapshots even when the pointer says the clean-up was done."""
    pointer = table.snapshot_pointer()
    if not pointer or not (force or pointer.get("dirty", True)):
        return
    for prefix, seq in gallery_snapshot.prefixes(pointer["bucket"], table.snapshot_root).items():
        if prefix != pointer["prefix"] and seq <= int(pointer["seq"]):
            gallery_snapshot.delete(pointer["bucket"], prefix)
    if pointer.get("previous_seq"):
        table.trim_log(int(pointer["previous_seq"]))
    if pointer.get("dirty", True):
        done = {k: v for k, v in pointer.items() if k not in ("person", "image_key")}
        table.set_snapshot_pointer({**done, "dirty": False}, int(pointer["seq"]))


def _try(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception as exc:  # the next compaction's clean-up deletes it
        log.warning("could not delete an unpublished snapshot: %s", exc)


def import_faces(table: GalleryTable, bucket: str, people: list[str], keys: list[str], embeddings: np.ndarray,
                 items: bool = True, event_time: str = "") -> int:
    """Bulk-load an empty gallery: one snapshot (what workers read) published at change 1, and
    with `items` the per-image face and order items (what writers and tools read), written in
    batches. Returns the change number. Refuses a gallery that has changes already."""
    if table.version() or table.snapshot_pointer():
        raise RuntimeError(f"{table.name} is not empty: bulk import is for a new gallery")
    names = sorted(set(people))
    ids = {name: i for i, name in enumerate(names)}
    gallery = Gallery.from_arrays(np.ascontiguousarray(embeddings, dtype=np.float32),
                                  np.fromiter((ids[p] for p in people), np.int32, len(people)), names, keys)
    if items:
        table.write_faces(people, keys, embeddings, event_time)
    prefix = gallery_snapshot.new_prefix(1, table.snapshot_root)
    rows = gallery_snapshot.write(bucket, prefix, gallery, 1)
    table.start_counter(1)
    if not table.set_snapshot_pointer(gallery_snapshot.pointer(1, bucket, prefix, rows), None):
        raise RuntimeError(f"{table.name}: another import published first")
    return 1
