"""The pure part of corrections (shared/engine/corrections.py): which face a record names, what each
decision does to it, a video's frames and appearances, and a regroup that keeps corrected faces apart."""
from __future__ import annotations

import numpy as np

from shared.engine import clustering
from shared.engine.corrections import apply_to_faces, apply_to_frames, face_key, iou, matching
from shared.pipeline.corrections import corrected

A = {"left": 100, "top": 100, "width": 100, "height": 100}
B = {"left": 400, "top": 100, "width": 100, "height": 100}


def face(box: dict[str, int], person: str | None, *candidates: tuple[str, float], cluster: str | None = None) -> dict:
    out = {"box": box, "person": person, "distance": candidates[0][1] if candidates else None,
           "candidates": [{"person": p, "distance": d} for p, d in candidates]}
    if cluster:
        out["cluster"] = cluster
    return out


def rec(box: dict[str, int], decision: str, name: str | None = None, **extra: object) -> dict:
    out = {"box": box, "decision": decision, **extra}
    if name:
        out["cluster" if name.startswith("u-") else "person"] = name
    return out


def test_a_record_names_the_face_it_overlaps_most_if_iou_is_at_least_a_half() -> None:
    shifted = {**A, "left": 110}  # IoU 90/110 = 0.82
    far = {**A, "left": 160}  # IoU 40/160 = 0.25
    assert round(iou(A, shifted), 3) == 0.818 and iou(A, far) < 0.5
    assert matching([A, B], [rec(shifted, "not_a_face")]) == {0: [rec(shifted, "not_a_face")]}
    assert matching([A, B], [rec(far, "not_a_face")]) == {}
    assert face_key(A) == "-@100,100,100,100" and face_key(A, 4.5) == "4.500@100,100,100,100"


def test_not_gives_the_next_candidate_within_the_threshold_that_names_no_other_face() -> None:
    faces = [face(A, "kit", ("kit", 0.3), ("rose", 0.5), ("jon", 0.55)), face(B, "rose", ("rose", 0.2))]
    (a, b) = apply_to_faces(faces, [rec(A, "not", "kit")], 0.6)
    assert a["person"] == "jon" and a["distance"] == 0.55 and a["corrected"] == ["not kit"]  # rose names face B
    assert b is faces[1]
    (a, _) = apply_to_faces(faces, [rec(A, "not", "kit"), rec(A, "not", "jon")], 0.6)
    assert a["person"] is None and a["distance"] == 0.3  # nobody else within the threshold
    assert faces[0]["person"] == "kit"  # the input is not changed


def test_is_names_the_face_not_a_face_removes_it_and_not_a_cluster_moves_it() -> None:
    faces = [{**face(A, None, ("kit", 0.7), cluster="u-000000000001aaaaaa"), "review": True}, face(B, "rose", ("rose", 0.2))]
    (a, b) = apply_to_faces(faces, [rec(A, "is", "kit"), rec(B, "not_a_face")], 0.6)
    assert b is None
    assert a["person"] == "kit" and a["distance"] == 0.7 and "cluster" not in a and "review" not in a
    (a, _) = apply_to_faces(faces, [rec(A, "not", "u-000000000001aaaaaa", moved_to="u-000000000002bbbbbb")], 0.6)
    assert a["person"] is None and a["cluster"] == "u-000000000002bbbbbb"
    (a, _) = apply_to_faces(faces, [rec(A, "not", "u-000000000001aaaaaa")], 0.6)
    assert "cluster" not in a


def test_a_videos_records_apply_to_their_frame_and_the_appearances_follow() -> None:
    frames = [{"t": round(i * 0.5, 3), "faces": [face(A, "kit")]} for i in range(6)]
    doc = {"kind": "recognize", "status": "succeeded", "media": "video", "duration_s": 3.0, "frames": frames,
           "appearances": [{"person": "kit", "intervals": [[0.0, 3.0]], "seconds": 3.0}], "people": ["kit"]}
    records = [{**rec(A, "not", "kit"), "t": 1.0}, {**rec(A, "not", "kit"), "t": 1.5}]
    out = corrected(doc, records, 0.6)
    assert [f["faces"][0]["person"] for f in out["frames"]] == ["kit", "kit", None, None, "kit", "kit"]
    assert out["appearances"][0]["intervals"] == [[0.0, 1.0], [2.0, 3.0]] and out["appearances"][0]["seconds"] == 2.0
    assert [f["t"] for f in out["engine_frames"]] == [1.0, 1.5]
    assert corrected(out, [], 0.6)["frames"] == frames and "engine_frames" not in corrected(out, [], 0.6)  # undo
    assert apply_to_frames(frames, [rec(A, "not", "kit")], 0.6) == frames  # a photo's record names no frame


def test_a_regroup_never_merges_clusters_kept_apart() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=128).astype(np.float32)
    base /= np.linalg.norm(base)
    faces = np.stack([base + rng.normal(scale=0.01, size=128).astype(np.float32) for _ in range(4)])
    clusters = ["u-000000000001aaaaaa"] * 3 + ["u-000000000002bbbbbb"]
    assert clustering.regroup(faces, clusters, 0.55) == {"u-000000000002bbbbbb": "u-000000000001aaaaaa"}
    assert clustering.regroup(faces, clusters, 0.55, apart={frozenset(clusters[2:])}) == {}
