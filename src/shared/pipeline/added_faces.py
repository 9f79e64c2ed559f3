"""A face the detector missed, added by its box (`lambdaface add-face`), and kept across recognitions.

- `add_face(config, bucket, key, box, person)`: the source of a recognized photo is read (the very
  bytes its result describes), the face at `box` embedded (shared/engine/faces.py `embed_at`),
  matched against the gallery, or named `person`, and appended to the result's `faces` with
  `"added": true` (and `"named": true` when named); `people`, the annotated copy and the person
  index follow. Bad input is a FaceError and changes nothing.
- `carry_over(...)`: the recognize use case calls it: when the source's previous result describes
  the same bytes (its `source_etag` is the new ETag: `--rerun`, a redelivery, a new upload of the
  same bytes), its added faces are embedded again at their boxes and matched anew (a named one
  keeps its name), unless the detector now finds a face there.

The result is rewritten only over the version read (S3's conditional write, If-Match): a
recognition of the source that finishes while a face is being added wins, and add-face fails
(RESULT_CHANGED) having changed nothing. The person index is written after the result (so a
refused write leaves it alone), then the annotated copy.

Embeddings are never stored: an added face is its box (and given name) in the result document.
An added face that matches nobody is not remembered as an unknown face (it joins no cluster).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import numpy as np

from shared import errors
from shared.aws import gallery_cache, s3
from shared.aws.gallery_table import GalleryTable
from shared.config import Config, EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import Box, embed_at
from shared.engine.matching import Gallery, Match, identify, needs_review
from shared.pipeline import annotated, keys, people_index, results

RESULT_CHANGED = "RESULT_CHANGED"  # add-face's own refusal (never in a result): the result changed meanwhile
SAME_FACE_IOU = 0.5  # a box overlapping a face of the result this much is that face
_BOX = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*$")


def parse_box(text: str) -> Box:
    """`LEFT,TOP,WIDTH,HEIGHT` (pixels of the original image) as a Box; FaceError BAD_BOX otherwise."""
    found = _BOX.match(text or "")
    if not found:
        raise errors.FaceError(errors.BAD_BOX, f"{text!r} is not a box: give LEFT,TOP,WIDTH,HEIGHT in pixels, e.g. 120,80,96,96")
    return Box(*(int(v) for v in found.groups()))


def check_person(person: str) -> None:
    """FaceError INVALID_PERSON unless `person` is a name `models/<person>/` accepts."""
    try:
        keys.parse_model_key(f"{keys.person_prefix(person)}x.jpg")
    except errors.FaceError as exc:
        if exc.code == errors.INVALID_PERSON:
            raise
        raise errors.FaceError(errors.INVALID_PERSON, f"person {keys.shorten(person)!r} must be 1-64 letters, digits, "
                                                      "'_', '-' or '.' (a name cannot contain '/')") from None


def overlap(a: dict[str, int], b: dict[str, int]) -> float:
    """Intersection over union of two boxes (result documents' dicts)."""
    width = min(a["left"] + a["width"], b["left"] + b["width"]) - max(a["left"], b["left"])
    height = min(a["top"] + a["height"], b["top"] + b["height"]) - max(a["top"], b["top"])
    inter = max(0, width) * max(0, height)
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def entry_for(box: Box, embedding: np.ndarray, gallery: Gallery, cfg: EngineConfig, taken: set[str],
              person: str | None = None) -> dict[str, Any]:
    """The `faces` element of an added face: named `person`, or matched (with one face per person on,
    a person in `taken`, named by another face of the photo, is passed over for the next candidate
    within the threshold, as one_face_per_person does)."""
    match = identify(embedding, gallery, cfg.threshold, cfg.top_k)[0]
    if person is not None:
        distance = next((c.distance for c in match.candidates if c.person == person), None)
        entry = results.face_entry(box, Match(person, distance, match.candidates))
        return {**entry, "added": True, "named": True}
    if cfg.one_face_per_person and match.person in taken:
        free = next((c for c in match.candidates if c.distance <= cfg.threshold and c.person not in taken), None)
        match = Match(free.person if free else None, free.distance if free else match.distance, match.candidates, True)
    entry = results.face_entry(box, match, review=needs_review(match.distance, cfg.threshold, cfg.review_band))
    return {**entry, "added": True}


def carry_over(config: Config, bucket: str, key: str, etag: str, image: np.ndarray, faces: list[dict[str, Any]],
               gallery: Gallery) -> list[dict[str, Any]]:
    """The added faces of `key`'s previous result, when it describes the same bytes (`etag`),
    embedded again in `image` and matched against `gallery`; `faces` (this recognition's) decide
    which are still missing and which people are taken. [] without a previous result."""
    try:
        previous = json.loads(s3.get_object(bucket, keys.result_key(key)).data)
    except (s3.ObjectMissing, ValueError):
        return []
    if not isinstance(previous, dict) or previous.get("source_etag") != etag or previous.get("media") == "video":
        return []
    out: list[dict[str, Any]] = []
    for old in previous.get("faces") or []:
        if not (isinstance(old, dict) and old.get("added") and isinstance(old.get("box"), dict)):
            continue
        try:
            box = Box(*(int(old["box"][k]) for k in ("left", "top", "width", "height")))
        except (KeyError, TypeError, ValueError):
            continue
        if any(overlap(box.to_dict(), f["box"]) >= SAME_FACE_IOU for f in faces + out):
            continue  # the detector finds it now (or it is there twice)
        try:
            face = embed_at(image, box, config.engine)
        except errors.FaceError:
            continue
        taken = {f["person"] for f in faces + out if f.get("person")}
        named = old.get("person") if old.get("named") else None
        out.append(entry_for(box, face.embedding, gallery, config.engine, taken, named))
    return out


def _result(bucket: str, key: str) -> tuple[dict[str, Any], str]:
    """`key`'s result, which add-face can extend (a succeeded photo recognition), and its ETag."""
    if not keys.is_query_key(key):
        raise errors.FaceError(errors.INVALID_KEY, f"{keys.shorten(key)!r} is not a recognized source (queries/<path>)")
    try:
        found = s3.get_object(bucket, keys.result_key(key))
        doc = json.loads(found.data)
    except s3.ObjectMissing:
        raise errors.FaceError(errors.OBJECT_NOT_FOUND, f"no result for {keys.shorten(key)!r} (is it recognized yet?)") from None
    except ValueError:
        raise errors.FaceError(errors.INVALID_KEY, f"the result of {keys.shorten(key)!r} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "recognize" or doc.get("status") != "succeeded":
        raise errors.FaceError(errors.INVALID_KEY, f"{keys.shorten(key)!r} has no succeeded recognition to add a face to")
    if doc.get("media") == "video":
        raise errors.FaceError(errors.INVALID_KEY, f"{keys.shorten(key)!r} is a video; faces are added to photos")
    return doc, found.info.etag


def _image(config: Config, bucket: str, key: str, etag: str) -> np.ndarray:
    """The decoded source: the bytes its result describes (else FaceError: replaced or deleted since)."""
    try:
        with s3.open_object(bucket, key, if_match=etag or None) as (_, body):
            return decode_image(body.read(), config.engine)
    except s3.ObjectMissing:
        raise errors.FaceError(errors.OBJECT_NOT_FOUND, f"{keys.shorten(key)!r} is no longer in the bucket") from None
    except s3.ObjectChanged:
        raise errors.FaceError(errors.OBJECT_NOT_FOUND, f"{keys.shorten(key)!r} was replaced since its result was "
                                                        "written; wait for its new result") from None


def revision(doc: dict[str, Any]) -> str:
    """The identity the person index records for `doc` after an edit: its job and its faces."""
    digest = hashlib.sha256(json.dumps(doc.get("faces"), sort_keys=True).encode()).hexdigest()[:16]
    return f"{doc['job_id']}#faces-{digest}"


def add_face(config: Config, bucket: str, key: str, box: Box, person: str | None = None) -> dict[str, Any]:
    """Add the face at `box` to `key`'s result (named `person`, else matched with the threshold its
    recognition used); the new result. FaceError (nothing changed) for a bad key or person, a box outside the image, a face already there."""
    if person is not None:
        check_person(person)
    doc, result_etag = _result(bucket, key)
    threshold = (doc.get("model") or {}).get("threshold")
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):  # match as its recognition did
        config = dataclasses.replace(config, engine=config.engine.with_overrides(threshold=float(threshold)))
    faces = [f for f in doc.get("faces") or [] if isinstance(f, dict)]
    image = _image(config, bucket, key, doc.get("source_etag") or "")
    for n, f in enumerate(faces, start=1):
        if isinstance(f.get("box"), dict) and overlap(box.to_dict(), f["box"]) >= SAME_FACE_IOU:
            raise errors.FaceError(errors.BAD_BOX, f"the box is face {n} of {keys.shorten(key)!r} already")
    face = embed_at(image, box, config.engine)
    gallery = gallery_cache.load(GalleryTable(config.pipeline.gallery_table))
    entry = entry_for(box, face.embedding, gallery, config.engine, {f["person"] for f in faces if f.get("person")}, person)
    doc["faces"] = faces + [entry]
    if isinstance(doc.get("engine_faces"), list):  # a corrected result: undoing a correction keeps the added face
        doc["engine_faces"] = doc["engine_faces"] + [entry]
    doc["people"] = sorted({f["person"] for f in doc["faces"] if f.get("person")})
    try:  # only over the result read: a recognition (or another edit) that finished meanwhile wins
        s3.put_json(bucket, keys.result_key(key), doc, if_match=result_etag)
    except (s3.ObjectChanged, s3.ObjectMissing):
        raise errors.FaceError(RESULT_CHANGED, f"the result of {keys.shorten(key)!r} changed while the face was "
                                               "being added; nothing was added (run the command again)") from None
    people_index.record(config, doc, revision=revision(doc))
    annotated.redraw(config, bucket, doc, image)
    return doc
