"""The pure grouping rules of unknown faces (src/shared/engine/clustering.py), on real embeddings of
../shared/faces where the rule is about faces, on synthetic ones where it is about graph sizes."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.engine import clustering
from shared.engine.matching import Gallery

KIT = [f"people/kit_harington/kit{i}.jpg" for i in (1, 2, 3)]
ROSE = ["people/rose_leslie/rose1.jpg", "people/rose_leslie/rose2.jpg"]


def embedding(photos: Any, rel: str) -> np.ndarray:
    return photos.faces(rel)[0].embedding


def unit_vectors(n: int, seed: int, spread: float = 0.0, centre: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if centre is None:
        v = rng.normal(size=(n, 128))
    else:
        v = centre[None, :] + rng.normal(scale=spread, size=(n, 128))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_ids_are_well_formed_and_fresh() -> None:
    ids = {clustering.new_cluster_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(clustering.is_cluster_id(i) for i in ids)
    assert not any(clustering.is_cluster_id(x) for x in ("u-123", "rose", "u-3F9C0A1B2C4D", "x-3f9c0a1b2c4d"))


def test_a_face_joins_its_nearest_cluster_in_any_partition(photos: Any) -> None:
    left = Gallery.from_pairs([("u-00000000000a", embedding(photos, KIT[0]))])
    right = Gallery.from_pairs([("u-00000000000b", embedding(photos, ROSE[0]))])
    queries = np.stack([embedding(photos, KIT[1]), embedding(photos, ROSE[1]), embedding(photos, "people/biden/biden.jpg")])
    kit, rose, biden = clustering.assign(queries, [left, right, Gallery()], 0.55)
    assert (kit, rose) == ("u-00000000000a", "u-00000000000b")
    assert clustering.is_cluster_id(biden) and biden not in (kit, rose)


def test_two_faces_of_one_photo_never_share_a_cluster(photos: Any) -> None:
    """Both are within the threshold of kit1's cluster: the nearer joins it, the other starts one."""
    remembered = Gallery.from_pairs([("u-00000000000a", embedding(photos, KIT[0]))])
    queries = np.stack([embedding(photos, KIT[1]), embedding(photos, KIT[2])])
    distances = np.linalg.norm(queries - embedding(photos, KIT[0]), axis=1)
    assert (distances < 0.55).all()
    clusters = clustering.assign(queries, [remembered], 0.55)
    nearer = int(np.argmin(distances))
    assert clusters[nearer] == "u-00000000000a" and clusters[1 - nearer] != "u-00000000000a"


def test_tracks_follow_a_face_across_frames_but_never_join_two_faces_of_one_frame(photos: Any) -> None:
    kit, rose = [embedding(photos, r) for r in KIT], [embedding(photos, r) for r in ROSE]
    frames = [0, 0, 1, 1, 2]
    faces = np.stack([kit[0], rose[0], rose[1], kit[1], kit[2]])
    assert clustering.tracks(frames, faces, 0.55) == [0, 1, 1, 0, 0]
    same_frame = clustering.tracks([0, 0], np.stack([kit[0], kit[1]]), 0.55)
    assert same_frame == [0, 1]


def test_edges_are_the_pairs_within_the_threshold() -> None:
    x = np.concatenate([unit_vectors(40, 1, 0.02, unit_vectors(1, 2)[0]), unit_vectors(60, 3)])
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    brute = {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if d[i, j] <= 0.55}
    assert set(clustering.edges(x, 0.55, neighbours=len(x))) == brute and len(brute) == 40 * 39 // 2
    capped = clustering.edges(x, 0.55)
    assert set(capped) <= brute and len(capped) <= 16 * len(x)


def test_one_person_seen_thousands_of_times_costs_linear_edges() -> None:
    """Every pair within the threshold would be 8 million tuples (2.6 GB); the cap keeps 16 a face."""
    x = unit_vectors(4000, 5, 0.02, unit_vectors(1, 6)[0])
    found = clustering.edges(x, 0.55)
    assert len(found) <= 16 * 4000
    merges = clustering.regroup(x, [f"u-{i % 7:012x}" for i in range(4000)], 0.55)
    assert len(set(merges.values())) == 1 and len(merges) == 6  # seven splits of one person: one cluster


def test_regroup_merges_into_the_biggest_and_never_splits() -> None:
    a, b = unit_vectors(1, 7)[0], unit_vectors(1, 8)[0]
    x = np.concatenate([unit_vectors(5, 9, 0.02, a), unit_vectors(2, 10, 0.02, a), unit_vectors(3, 11, 0.02, b)])
    clusters = ["u-00000000000b"] * 5 + ["u-00000000000a"] * 2 + ["u-00000000000c"] * 3
    assert clustering.regroup(x, clusters, 0.55) == {"u-00000000000a": "u-00000000000b"}
    # A cluster holding two people (never made by assign, but say by a wrong threshold) is not split.
    assert clustering.regroup(x, ["u-00000000000d"] * 10, 0.55) == {}


@pytest.mark.parametrize("n", [0, 1])
def test_regroup_of_almost_nothing(n: int) -> None:
    assert clustering.regroup(unit_vectors(n, 12), ["u-00000000000a"] * n, 0.55) == {}


def test_touched_is_the_clusters_of_the_new_faces_and_their_neighbours() -> None:
    a, b = unit_vectors(1, 13)[0], unit_vectors(1, 14)[0]
    x = np.concatenate([unit_vectors(3, 15, 0.02, a), unit_vectors(3, 16, 0.02, b), unit_vectors(1, 17, 0.02, a)])
    clusters = ["u-00000000000a"] * 3 + ["u-00000000000b"] * 3 + ["u-00000000000c"]
    assert clustering.touched(x, clusters, [6], 0.55) == {"u-00000000000a", "u-00000000000c"}
    assert clustering.touched(x, clusters, [], 0.55) == set()
