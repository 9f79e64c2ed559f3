"""Corrections applied to the engine's answer: pure (no AWS), so recognition, the `correct` command
and undo compute a result the same way.

A correction record (see shared/aws/corrections_table.py for its storage) names a face by its box
(and, in a video, the frame's time `t`) and holds one decision:
- `is` PERSON: the face is PERSON (its `distance` becomes PERSON's candidate distance, if listed);
- `not` PERSON or `not` a cluster id: the face is not them. A face named PERSON gets its next
  candidate within the threshold that is not excluded and names no other face of the image, or
  none; an unknown face leaves that cluster (`cluster` is dropped: remembering gives it another);
- `not_a_face`: the face is removed.
A record can also hold a face the detector missed (`added`, `lambdaface add-face`: its box, and
the person when one was given): it adds a face rather than deciding about one, so it is no
decision here (shared/pipeline/added_records.py embeds it; apply_to_faces passes it over).

A record matches the face of the image whose box overlaps it most, if their IoU is at least
MIN_IOU (a new detection of the same bytes finds the same boxes; a re-encoded copy nearly so).
"""
from __future__ import annotations

from typing import Any, Iterable

IS, NOT, NOT_A_FACE = "is", "not", "not_a_face"
DECISIONS = (IS, NOT, NOT_A_FACE)
ADDED = "added"  # a face added by its box: a record, but no decision about a face
MIN_IOU = 0.5
T_TOLERANCE = 0.0015  # seconds: a frame's time is rounded to the millisecond in results


def iou(a: dict[str, int], b: dict[str, int]) -> float:
    """Intersection over union of two boxes {left, top, width, height}."""
    left, top = max(a["left"], b["left"]), max(a["top"], b["top"])
    right = min(a["left"] + a["width"], b["left"] + b["width"])
    bottom = min(a["top"] + a["height"], b["top"] + b["height"])
    inter = max(0, right - left) * max(0, bottom - top)
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def face_key(box: dict[str, int], t: float | None = None) -> str:
    """A face's place: `<t or ->@<left>,<top>,<width>,<height>` (the record's sort key starts with it)."""
    where = "-" if t is None else f"{float(t):.3f}"
    return f"{where}@{int(box['left'])},{int(box['top'])},{int(box['width'])},{int(box['height'])}"


def matching(boxes: list[dict[str, int]], records: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """{face index: the records that match it}: each record goes to the face it overlaps most (IoU >= MIN_IOU)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        scores = [iou(box, record["box"]) for box in boxes]
        if scores:
            best = max(range(len(scores)), key=lambda i: scores[i])
            if scores[best] >= MIN_IOU:
                out.setdefault(best, []).append(record)
    return out


def excluded(records: Iterable[dict[str, Any]]) -> set[str]:
    """The people and cluster ids `not` records of one face exclude."""
    return {r.get("person") or r.get("cluster") for r in records if r["decision"] == NOT} - {None, ""}  # type: ignore[misc]


def apply_to_faces(faces: list[dict[str, Any]], records: list[dict[str, Any]], threshold: float) -> list[dict[str, Any] | None]:
    """The faces (result entries: box, person, distance, candidates, cluster...) with `records`
    applied, one per face in order, None for a face that is not a face. A face a record changed
    gets `corrected` (the decisions, e.g. ["not obama"]) and loses `review` (the review queue's
    mark); one no record matched is returned as is."""
    matched = matching([f["box"] for f in faces], [r for r in records if r["decision"] in DECISIONS])
    out: list[dict[str, Any] | None] = list(faces)
    # Faces with an `is` first (they take their person), then the others, nearest first.
    for i in sorted(matched, key=lambda i: (not any(r["decision"] == IS for r in matched[i]), faces[i].get("distance") or 9.0)):
        face, mine = dict(faces[i]), matched[i]
        if any(r["decision"] == NOT_A_FACE for r in mine):
            out[i] = None
            continue
        nots = excluded(mine)
        face["corrected"] = sorted({_label(r) for r in mine})
        face.pop("review", None)  # a person decided: the face is no longer one to review
        is_ = next((r["person"] for r in mine if r["decision"] == IS), None)
        if is_ is not None:
            face["person"] = is_
            face["distance"] = next((c["distance"] for c in face.get("candidates") or [] if c["person"] == is_), None)
            face.pop("cluster", None)
            face.pop("nearest_taken", None)
        else:
            if face.get("person") in nots:
                named = {f.get("person") for j, f in enumerate(out) if j != i and f}
                nxt = next((c for c in face.get("candidates") or []
                            if c["distance"] <= threshold and c["person"] not in nots and c["person"] not in named), None)
                face["person"] = nxt["person"] if nxt else None
                if nxt:
                    face["distance"] = nxt["distance"]
            if face.get("cluster") in nots:  # out of that cluster: into the one the correction made, or none yet
                moved = next((r["moved_to"] for r in mine if r.get("moved_to") and r.get("cluster") == face["cluster"]), None)
                face["cluster"] = moved
                if moved is None:
                    face.pop("cluster")
        out[i] = face
    return out


def _label(record: dict[str, Any]) -> str:
    if record["decision"] == NOT_A_FACE:
        return NOT_A_FACE
    return f"{record['decision']} {record.get('person') or record.get('cluster')}"


def apply_to_frames(frames: list[dict[str, Any]], records: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """A video's frames ({t, faces}) with the records of their times applied (see apply_to_faces)."""
    if not records:
        return frames
    out = []
    for frame in frames:
        mine = [r for r in records if r.get("t") is not None and abs(float(r["t"]) - float(frame["t"])) <= T_TOLERANCE]
        if mine:
            faces = [f for f in apply_to_faces(frame["faces"], mine, threshold) if f is not None]
            frame = {**frame, "faces": faces}
        out.append(frame)
    return out


def people_of(faces: Iterable[dict[str, Any] | None]) -> list[str]:
    """The sorted distinct people named in `faces`."""
    return sorted({f["person"] for f in faces if f and f.get("person")})
