"""Corrections that stay corrected: a person's decisions about faces, stored and replayed.

- `correct`: store a decision about face N of a result (`is` PERSON, `not` PERSON or cluster,
  `not_a_face`), then rewrite the result and its index entries (`reapply`).
- `for_etag`, `apply_photo`: what recognition does with every photo: one Query of the records of
  its content (ETag), applied before the result, the unknown faces and the index are written; so
  a rerun, a redelivered message or the same bytes uploaded at another key come out corrected.
  Videos: `apply_video` at the merge (the frames, then the appearances from them).
- `settle`: after recognition wrote a result, the records are read again; one made meanwhile (the
  result was computed without it) is applied then (tests/test_corrections.py, the interleaving).
- `add`: a face added by its box (`lambdaface add-face`) is an `added` record too
  (shared/pipeline/added_records.py): recognition embeds it, reapply adds or removes it.
- `undo`, `listing`, `forget_person`, `move_person`: the `corrections` command, `forget`, `merge`.

A result a correction changed keeps the engine's own answer beside it (`engine_faces`; a video's
changed frames in `engine_frames`), so undoing restores it without recognizing again.
Records: shared/aws/corrections_table.py. Without CORRECTIONS_TABLE nothing is kept or applied.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from typing import Any, Callable

import numpy as np

from shared import clock, errors
from shared.aws import s3
from shared.aws.clients import client, error_code
from shared.aws.corrections_table import ADDED_SK, IS_SK, NOT_SK, CorrectionsTable, etag_pk, pointer_pk, record_id
from shared.config import Config
from shared.engine import corrections as engine
from shared.engine.clustering import is_cluster_id, new_cluster_id
from shared.engine.video import appearances, with_screen_time
from shared.pipeline import added_records, annotated, keys, people_index

log = logging.getLogger(__name__)
ATTEMPTS = 8  # conditional result writes lost to concurrent writers before giving up


class CorrectionError(Exception):
    """A correction that cannot be made (unknown key, no such face, bad name); nothing was changed."""


def _table(config: Config) -> CorrectionsTable | None:
    name = config.pipeline.corrections_table
    return CorrectionsTable(name) if name else None


def for_etag(config: Config, etag: str | None) -> list[dict[str, Any]]:
    """Every record of one content (one Query); none without a table or an ETag."""
    table = _table(config)
    return table.for_etag(etag) if table and etag else []


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


# --- applying ----------------------------------------------------------------------------------


def apply_photo(config: Config, records: list[dict[str, Any]], entries: list[dict[str, Any]]
                ) -> list[dict[str, Any] | None]:
    """A photo's face entries with the records applied (None: not a face)."""
    return engine.apply_to_faces(entries, [r for r in records if r.get("t") is None], config.engine.threshold)


def excluded_clusters(records: list[dict[str, Any]], boxes: list[dict[str, int]]) -> list[set[str]]:
    """Per face (by box), the cluster ids its `not` records exclude."""
    matched = engine.matching(boxes, [r for r in records if r.get("t") is None and r["decision"] in engine.DECISIONS])
    return [{c for c in engine.excluded(matched.get(i, [])) if is_cluster_id(c)} for i in range(len(boxes))]


def _corrected_photo(doc: dict[str, Any], records: list[dict[str, Any]], threshold: float,
                     base: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The photo result `doc` with exactly `records` applied to the engine's answer (or to `base`:
    that answer with its added faces in step with the records)."""
    engine_faces = base if base is not None else doc.get("engine_faces") or doc.get("faces") or []
    faces = [f for f in engine.apply_to_faces(engine_faces, [r for r in records if r.get("t") is None], threshold) if f]
    out = {**doc, "faces": faces, "people": engine.people_of(faces)}
    out.pop("engine_faces", None)
    if faces != engine_faces:
        out["engine_faces"] = engine_faces
    return out


def apply_video(config: Config, records: list[dict[str, Any]], frames: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A video's frames with the records applied, and the engine's own version of the frames they changed."""
    timed = [r for r in records if r.get("t") is not None]
    corrected = engine.apply_to_frames(frames, timed, config.engine.threshold)
    changed = [old for old, new in zip(frames, corrected) if old is not new and old != new]
    return corrected, changed


def _sample_interval(doc: dict[str, Any], frames: list[dict[str, Any]]) -> float:
    """The interval the merge built the appearances on (pipeline/video.py); estimated from the
    frames' times for a result written before `sample_fps` was recorded."""
    fps, sample = doc.get("fps"), doc.get("sample_fps")
    if fps and sample:
        return max(1.0, float(fps) / float(sample)) / float(fps)
    gaps = Counter(round(b["t"] - a["t"], 3) for a, b in zip(frames, frames[1:]) if b["t"] > a["t"])
    return gaps.most_common(1)[0][0] if gaps else 1.0


def _corrected_video(doc: dict[str, Any], records: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    originals = {f["t"]: f for f in doc.get("engine_frames") or []}
    engine_frames = [originals.get(f["t"], f) for f in doc.get("frames") or []]
    frames = engine.apply_to_frames(engine_frames, [r for r in records if r.get("t") is not None], threshold)
    changed = [old for old, new in zip(engine_frames, frames) if old != new]
    found = with_screen_time(appearances(frames, _sample_interval(doc, frames), float(doc.get("duration_s") or 0.0)))
    out = {**doc, "frames": frames, "appearances": found, "people": [a["person"] for a in found if a["person"]]}
    out.pop("engine_frames", None)
    if changed:
        out["engine_frames"] = changed
    return out


def corrected(doc: dict[str, Any], records: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """A recognition result with exactly `records` applied (to the engine's own answer)."""
    return (_corrected_video if doc.get("media") == "video" else _corrected_photo)(doc, records, threshold)


def reapply(config: Config, bucket: str, source: str, image: tuple[str, np.ndarray] | None = None
            ) -> dict[str, Any] | None:
    """Rewrite `source`'s result with every record of its content applied (conditional on the
    result read: a concurrent writer makes it read again), then its index entries and its annotated
    copy (shared/pipeline/annotated.py). A photo's faces added by hand follow its `added` records
    (shared/pipeline/added_records.py; `image`: (ETag, pixels) of the source when the caller has
    them decoded). The new document, or None when there is no successful recognition result."""
    key = keys.result_key(source)
    for _ in range(ATTEMPTS):
        try:
            with s3.open_object(bucket, key) as (info, body):
                doc = json.loads(body.read())
        except s3.ObjectMissing:
            return None
        if doc.get("status") != "succeeded" or doc.get("kind") != "recognize":
            return None
        records = for_etag(config, doc.get("source_etag"))
        if doc.get("media") == "video":
            new = corrected(doc, records, config.engine.threshold)
        else:
            etag = doc.get("source_etag") or ""
            pixels = _loader(config, bucket, source, etag, image[1] if image and image[0] == etag else None)
            base = added_records.in_step(config, records, doc.get("engine_faces") or doc.get("faces") or [], pixels)
            new = _corrected_photo(doc, records, config.engine.threshold, base)
        if new == doc:
            return doc
        data = json.dumps(new, indent=2, ensure_ascii=False).encode("utf-8")
        try:
            client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json",
                                    IfMatch=f'"{info.etag}"')
        except Exception as exc:
            if error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                continue  # rewritten meanwhile (a recognition, another correction): read it again
            raise
        faces = json.dumps(new.get("faces") or new.get("appearances"), sort_keys=True)
        revision = hashlib.sha256((",".join(sorted(ids(records))) + faces).encode()).hexdigest()[:12]
        people_index.record(config, {**new, "job_id": f"{new['job_id']}#c{revision}"})
        known = image[1] if image and image[0] == new.get("source_etag") else None
        annotated.redraw(config, bucket, new, known)  # the picture follows: no name the result no longer gives
        return new
    raise CorrectionError(f"the result of {source} kept changing; try again")


def _loader(config: Config, bucket: str, source: str, etag: str, known: np.ndarray | None
            ) -> Callable[[], np.ndarray | None]:
    """The source's decoded bytes of ETag `etag`, read when first asked for (None: replaced since)."""
    return (lambda: known) if known is not None else (lambda: annotated.source_image(config, bucket, source, etag))


def settle(config: Config, bucket: str, document: dict[str, Any], seen: set[str] | None) -> None:
    """After a recognition wrote `document`: a record of its content made since the job read them
    (`seen`) is applied now (else it would wait for the next recognition)."""
    if seen is None or document.get("status") != "succeeded" or document.get("kind") != "recognize":
        return
    now = for_etag(config, document.get("source_etag"))
    if ids(now) != seen:
        log.info("a correction was made while the source was being recognized; applying it",
                 extra={"key": document["source"]})
        reapply(config, bucket, document["source"])


# --- the commands' use cases -------------------------------------------------------------------


def _result(bucket: str, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(s3.get_object(bucket, keys.result_key(source)).data)
    except s3.ObjectMissing:
        raise CorrectionError(f"no result for {source!r} (is the key right? e.g. queries/party.jpg)") from None
    if doc.get("kind") != "recognize" or doc.get("status") != "succeeded":
        raise CorrectionError(f"{source} has no successful recognition to correct (status {doc.get('status')!r})")
    return doc


def _frame_faces(doc: dict[str, Any], at: float | None) -> tuple[list[dict[str, Any]], float | None]:
    """The faces a face number counts in: the photo's, or (a video) those of the frame at `at` s."""
    if doc.get("media") != "video":
        if at is not None:
            raise CorrectionError(f"{doc['source']} is a photo: --at is for videos")
        return doc.get("faces") or [], None
    if at is None:
        raise CorrectionError(f"{doc['source']} is a video: give the frame's time with --at SECONDS")
    frames = doc.get("frames") or []
    if not frames:
        raise CorrectionError(f"{doc['source']} has no sampled frames")
    frame = min(frames, key=lambda f: abs(f["t"] - at))
    if abs(frame["t"] - at) > 0.5:
        raise CorrectionError(f"no sampled frame near {at} s in {doc['source']} (the nearest is at {frame['t']} s)")
    return frame["faces"], frame["t"]


def correct(config: Config, bucket: str, source: str, face: int, decision: str, name: str | None = None,
            at: float | None = None, store: Any = None) -> dict[str, Any]:
    """Record a decision about face `face` (counted from 1) of `source`'s result and rewrite the
    result and the index; the record. `store` (an UnknownStore): where a `not <cluster>` takes
    the remembered face out of that cluster. Idempotent: the same decision again changes nothing."""
    table = _table(config)
    if table is None:
        raise CorrectionError("no corrections table (CORRECTIONS_TABLE is not set)")
    if decision not in engine.DECISIONS:
        raise CorrectionError(f"unknown decision {decision!r}")
    if decision == engine.IS and (not name or is_cluster_id(name)):
        raise CorrectionError("--is takes a person's name (a cluster is named with `lambdaface name`)")
    doc = _result(bucket, source)
    faces, t = _frame_faces(doc, at)
    shown = faces if doc.get("media") == "video" else doc.get("faces") or []
    if not 1 <= face <= len(shown):
        raise CorrectionError(f"{source} has {len(shown)} face(s){' in that frame' if t is not None else ''}: "
                              f"--face counts from 1 to {len(shown)}, not {face}")
    box = {k: int(shown[face - 1]["box"][k]) for k in ("left", "top", "width", "height")}
    return decide(config, bucket, source, doc["source_etag"], box, t, decision, name, store)


def decide(config: Config, bucket: str, source: str, etag: str, box: dict[str, int], t: float | None, decision: str,
           name: str | None, store: Any = None) -> dict[str, Any]:
    """Store a decision about the face at `box` (at `t` s: a video frame) of the content `etag`
    (seen at `source`), then rewrite `source`'s result and index; the record."""
    table = _table(config)
    assert table is not None
    pk = etag_pk(etag)
    where = engine.face_key(box, t)
    sk = where + (f"{NOT_SK}{name}" if decision == engine.NOT else IS_SK)
    item: dict[str, Any] = {"pk": pk, "sk": sk, "id": record_id(pk, sk), "etag": etag, "box": box, "t": t,
                            "decision": decision, "source": source, "made_at": clock.iso(clock.now())}
    if decision != engine.NOT_A_FACE:
        item["cluster" if is_cluster_id(name or "") else "person"] = name
    existing = {r["sk"]: r for r in table.for_etag(etag) if r["sk"].startswith(where + "#")}
    if sk in existing and all(existing[sk].get(k) == item.get(k) for k in ("decision", "person", "cluster")):
        reapply(config, bucket, source)  # the same decision again: its result is brought in step if it was not
        return existing[sk]
    if decision == engine.NOT and is_cluster_id(name or "") and store is not None:
        moved = _leave_cluster(store, config, source, etag, box, t, name or "")
        if moved:
            item.update(unknown_face=moved[0], moved_to=moved[1])
    table.put(item)
    replaced = existing.get(sk)
    if replaced and pointer_pk(replaced) and pointer_pk(replaced) != pointer_pk(item):
        table.delete_copy(replaced)  # the `is` (or `not_a_face`) this one overwrote named someone else
    for other in existing.values():  # the decisions this one contradicts go
        if (decision == engine.IS and other["sk"] == where + f"{NOT_SK}{name}") or (
                decision == engine.NOT and other["sk"] == where + IS_SK and other.get("person") == name):
            table.delete(other)
    reapply(config, bucket, source)
    return item


def add(config: Config, source: str, etag: str, box: dict[str, int], person: str | None) -> dict[str, Any]:
    """Store a face added by its `box` to the content `etag` (seen at `source`), named `person` or
    none: an `added` record (the same box again replaces it); the record. reapply then adds it to
    the result (shared/pipeline/added_faces.py)."""
    table = _table(config)
    if table is None:
        raise CorrectionError("no corrections table (CORRECTIONS_TABLE is not set): an added face is kept as a record")
    pk, sk = etag_pk(etag), engine.face_key(box) + ADDED_SK
    item: dict[str, Any] = {"pk": pk, "sk": sk, "id": record_id(pk, sk), "etag": etag, "box": box, "t": None,
                            "decision": engine.ADDED, "source": source, "made_at": clock.iso(clock.now())}
    if person:
        item["person"] = person
    replaced = next((r for r in table.for_etag(etag) if r["sk"] == sk), None)
    table.put(item)
    if replaced and pointer_pk(replaced) and pointer_pk(replaced) != pointer_pk(item):
        table.delete_copy(replaced)  # it named someone else
    return item


def drop(config: Config, record: dict[str, Any]) -> None:
    """Delete one record (and its copy) without rewriting any result."""
    table = _table(config)
    if table is not None:
        table.delete(record)


def _leave_cluster(store: Any, config: Config, source: str, etag: str, box: dict[str, int], t: float | None,
                   cluster: str) -> tuple[str, str] | None:
    """Move the remembered face of (source, etag, box) out of `cluster` (and the clusters merged
    into it) into a new cluster of its own: (its face id, the new cluster id), or None when no
    such face is remembered."""
    aliases = store.aliases()
    current = store.resolve(cluster, aliases)
    for member in sorted({current} | {old for old in aliases if store.resolve(old, aliases) == current}):
        for face in store.cluster_faces(member, embeddings=True):
            same_t = (face.t is None) == (t is None) and (t is None or abs(float(face.t) - t) <= 0.5)
            if face.source == source and face.etag == etag and same_t and engine.iou(face.box, box) >= engine.MIN_IOU:
                new = new_cluster_id()
                store.move(face, new)
                store.settle(config.pipeline.gallery_compact_every)
                return face.face_id, new
    return None


def listing(config: Config, person: str | None = None) -> list[dict[str, Any]]:
    """Every record (or those naming `person` or a cluster id), oldest first."""
    table = _table(config)
    if table is None:
        return []
    found = table.scan() if person is None else (r for r in table.naming(person) + table.apart() if r.get("cluster", person) == person)
    return sorted(({k: v for k, v in r.items() if k not in ("record_pk", "record_sk")} | _home(r) for r in found),
                  key=lambda r: (r.get("made_at", ""), r["id"]))


def _home(item: dict[str, Any]) -> dict[str, Any]:
    """A record's own key (a copy's `record_pk`/`record_sk`)."""
    return {"pk": item.get("record_pk", item["pk"]), "sk": item.get("record_sk", item["sk"])}


def undo(config: Config, bucket: str, record: str, store: Any = None) -> dict[str, Any]:
    """Delete the record whose id is `record` and restore the engine's answer in its source's result
    and index (a face a `not <cluster>` took out goes back into that cluster); the record."""
    table = _table(config)
    found = list(table.scan(record=record)) if table else []
    if not found:
        raise CorrectionError(f"no correction {record!r} (see `lambdaface corrections`)")
    (item,) = found
    table.delete(item)  # type: ignore[union-attr]
    if item.get("moved_to") and store is not None:
        for face in store.cluster_faces(item["moved_to"], embeddings=True):
            if face.face_id == item.get("unknown_face"):
                store.move(face, store.resolve(item["cluster"]))
                store.settle(config.pipeline.gallery_compact_every)
    reapply(config, bucket, item["source"])
    return item


def forget_person(config: Config, person: str) -> int:
    """Delete every record naming `person` (forgetting them); how many."""
    table = _table(config)
    if table is None:
        return 0
    found = table.naming(person)  # their copies: a Query
    for item in found:
        table.delete(item)
    return len(found)


def move_person(config: Config, from_name: str, into_name: str) -> int:
    """Every record naming `from_name` now names `into_name` (a merge or a rename): each is written
    under its new key, then the old one deleted (run again, it moves what is left); how many."""
    table = _table(config)
    if table is None:
        return 0
    moved = 0
    for copy in table.naming(from_name):
        item = {k: v for k, v in copy.items() if k not in ("record_pk", "record_sk")} | _home(copy)
        sk = item["sk"]
        if item["decision"] == engine.NOT:
            sk = sk[: len(sk) - len(from_name)] + into_name
        table.put({**item, "sk": sk, "id": record_id(item["pk"], sk), "person": into_name})
        if sk != item["sk"]:
            table.delete(item)
        else:
            table.delete_copy(item)  # the record itself was overwritten under the new name
        moved += 1
    return moved


def keep_out_of_naming(config: Config, bucket: str, store: Any, cluster: str, person: str, faces: list[Any]) -> set[str]:
    """Before `cluster` is named `person`: each of its `faces` (UnknownFace) that a record says is
    not `person` leaves the cluster (as `correct --not <cluster>` does, so its result and index
    follow), and is neither enrolled nor named. Their face ids."""
    out = refused(config, person, faces)
    for face in faces:
        if face.face_id in out:
            decide(config, bucket, face.source, face.etag, face.box, face.t, engine.NOT, cluster, store)
    return out


def refused(config: Config, person: str, faces: list[Any]) -> set[str]:
    """The face ids of remembered unknown `faces` (UnknownFace) that a record says are not `person`."""
    nots = [r for r in listing(config, person) if r["decision"] == engine.NOT and r.get("person") == person]
    out = set()
    for face in faces:
        for r in nots:
            same_t = (face.t is None) == (r.get("t") is None) and (face.t is None or abs(float(face.t) - float(r["t"])) <= 0.5)
            if r["etag"] == face.etag and same_t and engine.iou(r["box"], face.box) >= engine.MIN_IOU:
                out.add(face.face_id)
    return out


def check_name(name: str) -> None:
    """A valid person name (as models/<person>/ takes it) or a cluster id; CorrectionError otherwise."""
    if is_cluster_id(name):
        return
    try:
        keys.parse_model_key(f"{keys.person_prefix(name)}x.jpg")
    except errors.FaceError as exc:
        raise CorrectionError(str(exc).split(": ", 1)[-1]) from None
