"""1:N matching arithmetic on synthetic embeddings, where the right answer is known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from shared.engine.matching import Gallery, identify


def unit(i: int, scale: float = 1.0) -> np.ndarray:
    vector = np.zeros(128, dtype=np.float32)
    vector[i] = scale
    return vector


@pytest.fixture
def gallery() -> Gallery:
    return Gallery.from_pairs([("bob", unit(1)), ("ann", unit(0)), ("bob", unit(2)), ("cat", unit(3, 5.0))])


def test_gallery_groups_faces_by_person(gallery):
    assert gallery.people == ["ann", "bob", "cat"]
    assert gallery.size == 4


def test_nearest_person_uses_their_closest_face(gallery):
    query = unit(2) * 0.9  # 0.1 from bob's second face
    (match,) = identify(query, gallery, threshold=0.6, top_k=3)
    assert match.person == "bob"
    assert match.distance == pytest.approx(0.1, abs=1e-5)
    assert [c.person for c in match.candidates] == ["bob", "ann", "cat"]
    assert match.candidates[1].distance == pytest.approx(np.hypot(1, 0.9), abs=1e-5)


def test_farther_than_threshold_is_unknown_but_keeps_candidates(gallery):
    (match,) = identify(unit(5), gallery, threshold=0.6, top_k=2)
    assert match.person is None
    assert match.distance == pytest.approx(np.sqrt(2), abs=1e-5)
    assert len(match.candidates) == 2


def test_several_queries_at_once(gallery):
    matches = identify(np.stack([unit(0), unit(3, 5.0), unit(1)]), gallery, top_k=1)
    assert [m.person for m in matches] == ["ann", "cat", "bob"]
    assert all(len(m.candidates) == 1 for m in matches)


def test_empty_gallery_knows_nobody():
    (match,) = identify(unit(0), Gallery.from_pairs([]))
    assert match.person is None and match.distance is None and match.candidates == []


def test_large_gallery_agrees_with_brute_force():
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(5000, 128)).astype(np.float32)
    names = [f"p{i % 700}" for i in range(5000)]
    gallery = Gallery.from_pairs(zip(names, embeddings))
    queries = embeddings[[3, 999, 4321]] + rng.normal(scale=0.01, size=(3, 128)).astype(np.float32)
    for query, match in zip(queries, identify(queries, gallery, threshold=10.0, top_k=5)):
        brute = {}
        for name, e in zip(names, embeddings):
            brute[name] = min(brute.get(name, np.inf), float(np.linalg.norm(e - query)))
        expected = sorted(brute.items(), key=lambda kv: kv[1])[:5]
        assert [c.person for c in match.candidates] == [n for n, _ in expected]
        assert [c.distance for c in match.candidates] == pytest.approx([d for _, d in expected], abs=1e-3)


# --- one face per person per image ---------------------------------------------------------------

from shared.engine.matching import Candidate, Match, one_face_per_person  # noqa: E402


def test_two_faces_of_one_person_name_only_the_nearer(gallery):
    # Two faces both nearest to ann; the farther one's next candidate (bob) is within the threshold.
    queries = np.stack([unit(0) * 0.8 + unit(1) * 0.3, unit(0) * 0.95])
    plain = identify(queries, gallery, threshold=1.1, top_k=3)  # bob: 1.06 from the first, 1.38 from the second
    assert [m.person for m in plain] == ["ann", "ann"]
    first, second = one_face_per_person(plain, threshold=1.1)
    assert second is plain[1] and second.person == "ann" and not second.nearest_taken  # the nearer keeps it
    assert first.person == "bob" and first.nearest_taken
    assert first.distance == pytest.approx(plain[0].candidates[1].distance)
    assert first.candidates == plain[0].candidates  # the shape is kept: candidates as identify listed them


def test_a_face_with_no_other_candidate_within_the_threshold_becomes_unknown(gallery):
    queries = np.stack([unit(0) * 0.9, unit(0) * 0.99])  # bob is ~1.35 from both: too far
    plain = identify(queries, gallery, threshold=0.6, top_k=3)
    first, second = one_face_per_person(plain, threshold=0.6)
    assert second.person == "ann"
    assert first.person is None and first.nearest_taken
    assert first.distance == plain[0].distance  # still the distance to its nearest person


def test_faces_of_different_people_and_unknown_faces_are_left_alone(gallery):
    plain = identify(np.stack([unit(0), unit(1), unit(5)]), gallery, threshold=0.6, top_k=3)
    assert one_face_per_person(plain, threshold=0.6) == plain
    assert one_face_per_person([], threshold=0.6) == []


def test_the_assignment_is_nearest_pair_first_across_faces():
    # Face 0: ann 0.2, bob 0.3. Face 1: ann 0.1, bob 0.5. Face 2: bob 0.25, cat 0.4.
    # Nearest first: (1, ann 0.1), (0, ann) taken, (2, bob 0.25), (0, bob) taken -> face 0 none.
    c = Candidate
    matches = [Match("ann", 0.2, [c("ann", 0.2), c("bob", 0.3)]),
               Match("ann", 0.1, [c("ann", 0.1), c("bob", 0.5)]),
               Match("bob", 0.25, [c("bob", 0.25), c("cat", 0.4)])]
    out = one_face_per_person(matches, threshold=0.6)
    assert [(m.person, m.distance, m.nearest_taken) for m in out] == [
        (None, 0.2, True), ("ann", 0.1, False), ("bob", 0.25, False)]
    # Every person names at most one face, whatever the order of the faces.
    assert one_face_per_person(matches[::-1], threshold=0.6)[::-1] == out
