"""What `lambdaface report` shows: the report's data (report.py fills it from the bucket,
report_page.py and report_people.py render it; neither imports the other's module for it), the
check that a result document has the shape the page reads, the redaction of the names of forgotten
people, and who gets a page of their own (`subjects`: every person enrolled now, every unknown
cluster the results name) with where they appear.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from lambdaface.watch import SUCCEEDED

FORGOTTEN = "(forgotten)"  # shown instead of the name of a person with no image left under models/


@dataclass
class Person:
    name: str
    images: list[str] = field(default_factory=list)  # model keys
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # model key -> its result
    thumbnail: str | None = None  # asset path relative to the page
    faces: list[str] = field(default_factory=list)  # asset paths of their enrolled faces (the first is `thumbnail`)

    @property
    def enrolled(self) -> list[str]:
        return [k for k in self.images if (self.results.get(k) or {}).get("status") == SUCCEEDED
                and self.results[k].get("kind") == "enroll"]

    @property
    def failed(self) -> list[tuple[str, dict[str, Any]]]:
        return [(k, self.results[k].get("error") or {}) for k in self.images
                if (self.results.get(k) or {}).get("status") == "failed"]

    @property
    def pending(self) -> list[str]:
        return [k for k in self.images if k not in self.results]


@dataclass
class Result:
    doc: dict[str, Any]
    modified: float  # the result object's LastModified (epoch s)
    image: str | None = None  # asset path of the annotated photo (or the source photo)
    boxes_drawn: bool = True  # False: `image` is the source photo, the page draws the boxes
    image_size: tuple[int, int] | None = None  # of the asset
    segments: list[tuple[float, float]] | None = None  # video segments' [start_s, end_s)
    redacted: bool = False  # names of forgotten people were taken out of `doc` (its annotated copy is not shown)


@dataclass
class Report:
    bucket: str
    endpoint: str | None
    generated: float
    people: list[Person]
    results: list[Result]
    query_results_total: int  # in the bucket (before --since and --limit)
    query_results_in_range: int  # after --since
    limit: int
    since: float | None
    forgotten: list[dict[str, Any]] = field(default_factory=list)  # forget results of model images now gone (names taken out)
    problems: list[str] = field(default_factory=list)  # what could not be read or was skipped (shown on the page)


# --- pages of their own: people and unknown clusters ---------------------------------------------

PAGES = "people"  # DIR/people/<hash>.html: a page per person and per unknown cluster


def page_path(name: str, cluster: bool = False) -> str:
    """The page of a person (or of an unknown cluster), relative to index.html: named by a hash,
    never by the name (names come from the bucket)."""
    digest = hashlib.sha256(f"{'cluster' if cluster else 'person'}\n{name}".encode()).hexdigest()[:24]
    return f"{PAGES}/{digest}.html"


@dataclass
class Appearance:
    """One result where a subject appears: their faces in a photo, or their intervals in a video."""

    result: Result
    faces: list[dict[str, Any]] = field(default_factory=list)  # photo: this subject's faces (box, distance)
    intervals: list[tuple[float, float]] = field(default_factory=list)  # video: [start_s, end_s]
    seconds: float | None = None  # video: seconds on screen


@dataclass
class Subject:
    """Who has a page: a person enrolled now, or an unknown cluster (remembering on)."""

    name: str  # the person's name, or the cluster id
    cluster: bool
    page: str  # page_path(name, cluster)
    person: Person | None  # the enrolled person (None for a cluster)
    appearances: list[Appearance]  # newest first, as the results are


def _appearance(r: Result, match: Any) -> Appearance | None:
    doc = r.doc
    if doc.get("status") != SUCCEEDED:
        return None
    if doc.get("media") == "video":
        for entry in doc.get("appearances") or []:
            if isinstance(entry, dict) and match(entry):
                spans = [(float(a), float(b)) for a, b in entry.get("intervals") or []]
                seconds = entry.get("seconds")
                return Appearance(r, intervals=spans, seconds=float(seconds) if isinstance(seconds, (int, float))
                                  else round(sum(b - a for a, b in spans), 3))
        return None
    faces = [f for f in doc.get("faces") or [] if isinstance(f, dict) and match(f)]
    return Appearance(r, faces=faces) if faces else None


def subjects(people: list[Person], results: list[Result]) -> list[Subject]:
    """A page each: every person enrolled now (`people`, by name), then every unknown cluster the
    results name (by id); each with the results where they appear, in the order of `results`
    (newest first). Forgotten people are not in `people`, and their names read FORGOTTEN in results."""
    out = []
    for p in people:
        found = [a for r in results if (a := _appearance(r, lambda x, n=p.name: x.get("person") == n))]
        out.append(Subject(p.name, False, page_path(p.name), p, found))
    clusters = sorted({str(x["cluster"]) for r in results if r.doc.get("status") == SUCCEEDED
                       for x in [*(r.doc.get("faces") or []), *(r.doc.get("appearances") or [])]
                       if isinstance(x, dict) and x.get("cluster") and not x.get("person")})
    for c in clusters:
        found = [a for r in results if (a := _appearance(r, lambda x, c=c: x.get("cluster") == c and not x.get("person")))]
        out.append(Subject(c, True, page_path(c, cluster=True), None, found))
    return out


# --- the shape of a result document -------------------------------------------------------------

_TEXT = ("status", "kind", "media", "source", "finished_at", "job_id", "person", "annotated", "event_time", "cluster")
_NUMBERS = ("duration_s", "fps", "frames_sampled", "segments", "distance", "t")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_face(face: Any, where: str) -> str | None:
    if not isinstance(face, dict):
        return f"{where} is not an object"
    for name in ("person", "cluster"):
        if face.get(name) is not None and not isinstance(face[name], str):
            return f"{where}.{name} is not text"
    if face.get("distance") is not None and not _number(face["distance"]):
        return f"{where}.distance is not a number"
    box = face.get("box")
    if box is not None and not (isinstance(box, dict) and all(_number(v) for v in box.values())):
        return f"{where}.box is not an object of numbers"
    candidates = face.get("candidates")
    if candidates is not None:
        if not isinstance(candidates, list):
            return f"{where}.candidates is not a list"
        for i, c in enumerate(candidates):
            if problem := _check_face(c, f"{where}.candidates[{i}]"):
                return problem
    return None


def malformed(doc: Any) -> str | None:
    """Why `doc` is not a result document the page can show (None when it is): every field the page
    reads has its type (text, number, list of objects, ...), whatever else it holds."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    for name in _TEXT:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            return f"`{name}` is not text"
    for name in _NUMBERS:
        if doc.get(name) is not None and not _number(doc[name]):
            return f"`{name}` is not a number"
    for name in ("image", "timings_ms"):
        if doc.get(name) is not None and not isinstance(doc[name], dict):
            return f"`{name}` is not an object"
    error = doc.get("error")
    if error is not None and not (isinstance(error, dict) and all(v is None or isinstance(v, str) for v in error.values())):
        return "`error` is not an object of texts"
    people = doc.get("people")
    if people is not None and not (isinstance(people, list) and all(isinstance(p, str) for p in people)):
        return "`people` is not a list of names"
    for name in ("faces", "frames", "appearances"):
        if doc.get(name) is not None and not isinstance(doc[name], list):
            return f"`{name}` is not a list"
    for i, face in enumerate(doc.get("faces") or []):
        if problem := _check_face(face, f"faces[{i}]"):
            return problem
    for i, frame in enumerate(doc.get("frames") or []):
        if not isinstance(frame, dict) or not _number(frame.get("t")) or not isinstance(frame.get("faces", []), list):
            return f"`frames[{i}]` is not an object with a time `t` and a list of `faces`"
        for j, face in enumerate(frame.get("faces") or []):
            if problem := _check_face(face, f"frames[{i}].faces[{j}]"):
                return problem
    for i, entry in enumerate(doc.get("appearances") or []):
        intervals = entry.get("intervals") if isinstance(entry, dict) else None
        if (not isinstance(entry, dict) or _check_face({"person": entry.get("person"), "cluster": entry.get("cluster")}, "")
                or not isinstance(intervals or [], list)
                or not all(isinstance(s, list) and len(s) == 2 and all(map(_number, s)) for s in intervals or [])):
            return f"`appearances[{i}]` is not an object with a name and a list of [start, end] intervals"
    return None


# --- names of forgotten people ------------------------------------------------------------------


def redacted(doc: dict[str, Any], known: set[str]) -> tuple[dict[str, Any], bool]:
    """A copy of `doc` where every person name not in `known` (people with an image under models/
    now) reads FORGOTTEN, and whether any did. A forgotten person's name is not shown anywhere."""
    out = copy.deepcopy(doc)
    changed = False

    def name(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str) and value and value not in known:
            changed = True
            return FORGOTTEN
        return value

    def faces(items: Any) -> None:
        for face in items or []:
            if isinstance(face, dict) and face.get("person"):
                face["person"] = name(face["person"])
            if isinstance(face, dict):
                faces(face.get("candidates"))

    if out.get("person"):
        out["person"] = name(out["person"])
    if isinstance(out.get("people"), list):
        out["people"] = sorted({name(p) for p in out["people"]}, key=lambda p: (p == FORGOTTEN, p))
    faces(out.get("faces"))
    for frame in out.get("frames") or []:
        if isinstance(frame, dict):
            faces(frame.get("faces"))
    for entry in out.get("appearances") or []:
        if isinstance(entry, dict) and entry.get("person"):
            entry["person"] = name(entry["person"])
    return out, changed
