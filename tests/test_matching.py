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
