"""A face the detector missed, added by its box (`lambdaface add-face`), and kept across recognitions.

`add_face(config, bucket, key, box, person)`: the source of a recognized photo is read (the very
bytes its result describes) and the box checked (inside the image, large enough, not a face of
the result already; engine/faces.py `embed_at`). The face is then stored as a correction record
(decision `added`: its box, and `person` when given; corrections.add), keyed by the source's ETag
like every other record, and the result rewritten with the records applied (corrections.reapply):
the face embedded at its box, matched against the gallery or named `person`, appended to `faces`
with `"added": true` (and `"named": true` when named); `people`, the person index and the
annotated copy follow. Bad input is a FaceError and changes nothing.

Every recognition of the same bytes (`--rerun`, a redelivery, a new upload of them at any key)
reads the record with the others (one Query) and embeds the face again
(shared/pipeline/added_records.py); `lambdaface corrections` lists it, `corrections undo ID`
removes it (and the face from the result and the index); forgetting the person a record names
deletes it. When new bytes were recognized at the key while the face was being added, add-face
fails (RESULT_CHANGED) and deletes its record: nothing was added.

Embeddings are never stored: an added face is its box (and given name) in the record and the result.
An added face that matches nobody is not remembered as an unknown face (it joins no cluster).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np

from shared import errors
from shared.aws import gallery_cache, s3
from shared.aws.gallery_table import GalleryTable
from shared.config import Config
from shared.engine.decode import decode_image
from shared.engine.faces import Box, embed_at
from shared.pipeline import corrections, keys
from shared.pipeline.added_records import SAME_FACE_IOU, overlap

RESULT_CHANGED = "RESULT_CHANGED"  # add-face's own refusal (never in a result): the result changed meanwhile
NO_RECORDS = "NO_CORRECTIONS_TABLE"  # add-face's own refusal: no table to keep the added face in
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


def add_face(config: Config, bucket: str, key: str, box: Box, person: str | None = None) -> tuple[dict[str, Any], int]:
    """Add the face at `box` to `key`'s result (named `person`, else matched with the threshold its
    recognition used): the new result and the face's number in it (from 1). FaceError (nothing
    changed) for a bad key or person, a box outside the image, a face already there."""
    if person is not None:
        check_person(person)
    doc, _ = _result(bucket, key)
    threshold = (doc.get("model") or {}).get("threshold")
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):  # match as its recognition did
        config = dataclasses.replace(config, engine=config.engine.with_overrides(threshold=float(threshold)))
    faces = [f for f in doc.get("faces") or [] if isinstance(f, dict)]
    etag = doc.get("source_etag") or ""
    image = _image(config, bucket, key, etag)
    for n, f in enumerate(faces, start=1):
        if isinstance(f.get("box"), dict) and overlap(box.to_dict(), f["box"]) >= SAME_FACE_IOU:
            raise errors.FaceError(errors.BAD_BOX, f"the box is face {n} of {keys.shorten(key)!r} already")
    embed_at(image, box, config.engine)  # the box is checked (inside the image, large enough) before anything is stored
    gallery_cache.load(GalleryTable(config.pipeline.gallery_table))  # ... and the gallery is there (reapply matches on it)
    try:
        record = corrections.add(config, key, etag, box.to_dict(), person)
    except corrections.CorrectionError as exc:
        raise errors.FaceError(NO_RECORDS, str(exc)) from None
    try:
        doc = corrections.reapply(config, bucket, key, image=(etag, image)) or {}
    except corrections.CorrectionError:
        doc = {}  # it kept changing
    number = next((n for n, f in enumerate(doc.get("faces") or [], start=1)
                   if f.get("added") and f["box"] == box.to_dict()), None)
    if doc.get("source_etag") != etag:  # new bytes were recognized meanwhile: the record goes
        corrections.drop(config, record)
        raise errors.FaceError(RESULT_CHANGED, f"the result of {keys.shorten(key)!r} changed while the face was "
                                               "being added; nothing was added (run the command again)")
    if number is None:  # a recognition meanwhile found a face there, or a `not_a_face` record removes it
        corrections.drop(config, record)
        raise errors.FaceError(errors.BAD_BOX, f"the box is a face of {keys.shorten(key)!r} already, or one corrected "
                                               "as not a face; nothing was added")
    return doc, number
