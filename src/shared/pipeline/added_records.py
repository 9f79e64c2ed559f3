"""Faces added by hand (`lambdaface add-face`), as correction records: each `added` record of a
content (its box, and the person when `--is` named it) becomes a face of that content's result.

- `entries`: recognition, with the records its one Query read (corrections.for_etag): each added
  box is embedded in the decoded photo (engine/faces.py `embed_at`) and matched against the
  gallery, or named, unless the detector found a face there; so an added face is kept by a rerun,
  a redelivery and a new upload of the same bytes at any key, and by nothing else.
- `in_step`: a result being rewritten (corrections.reapply: add-face itself, `corrections undo`,
  settle after a recognition): its added faces made to follow the records (an undone one goes, a
  new one is embedded, reading the source's bytes and the gallery only then).

An added face is its box (and given name) in the record and the result: no embedding is stored.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from shared import errors
from shared.aws import gallery_cache
from shared.aws.gallery_table import GalleryTable
from shared.config import Config, EngineConfig
from shared.engine.corrections import ADDED
from shared.engine.faces import Box, embed_at
from shared.engine.matching import Gallery, Match, identify, needs_review
from shared.pipeline import results

SAME_FACE_IOU = 0.5  # a box overlapping a face of the result this much is that face


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


def added(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `added` records of a photo, oldest first (the order their faces take in the result)."""
    return sorted((r for r in records if r.get("decision") == ADDED and r.get("t") is None),
                  key=lambda r: (r.get("made_at", ""), r["id"]))


def _box(record: dict[str, Any]) -> Box:
    return Box(*(int(record["box"][k]) for k in ("left", "top", "width", "height")))


def _matches(entry: dict[str, Any], record: dict[str, Any]) -> bool:
    """Does the result's added face `entry` stand for `record` (its box, and the name it gives)?"""
    named = entry.get("person") if entry.get("named") else None
    return entry["box"] == _box(record).to_dict() and named == (record.get("person") or None)


def entries(config: Config, records: list[dict[str, Any]], image: np.ndarray | Callable[[], np.ndarray | None],
            faces: list[dict[str, Any]], gallery: Gallery | Callable[[], Gallery],
            kept: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The faces the `added` records among `records` add to `faces` (the detector's), in order: an
    entry of `kept` that stands for its record as is, else its box embedded in `image` and matched
    against `gallery` (each may be a function, called the first time it is needed). A record whose
    box is a face of `faces` (the detector finds it now) adds none; one whose box cannot be embedded
    (or whose image cannot be read) either."""
    out: list[dict[str, Any]] = []
    loaded: dict[str, Any] = {}

    def get(name: str, value: Any) -> Any:
        if name not in loaded:
            loaded[name] = value() if callable(value) else value
        return loaded[name]

    for record in added(records):
        box = _box(record)
        if any(overlap(box.to_dict(), f["box"]) >= SAME_FACE_IOU for f in faces + out):
            continue  # the detector finds it (or it is there twice)
        same = next((e for e in kept or [] if _matches(e, record)), None)
        if same is not None:
            out.append(same)
            continue
        pixels = get("image", image)
        if pixels is None:
            continue
        try:
            face = embed_at(pixels, box, config.engine)
        except errors.FaceError:
            continue
        taken = {f["person"] for f in faces + out if f.get("person")}
        out.append(entry_for(box, face.embedding, get("gallery", gallery), config.engine, taken, record.get("person") or None))
    return out


def in_step(config: Config, records: list[dict[str, Any]], base: list[dict[str, Any]],
            image: Callable[[], np.ndarray | None]) -> list[dict[str, Any]]:
    """A result's engine answer `base` with its added faces following `records`: the detector's
    faces, then one per `added` record (kept from `base` when it stands for it, else embedded in
    `image()` and matched against the gallery)."""
    detector = [f for f in base if not f.get("added")]
    kept = [f for f in base if f.get("added")]
    return detector + entries(config, records, image, detector,
                              lambda: gallery_cache.load(GalleryTable(config.pipeline.gallery_table)), kept)
