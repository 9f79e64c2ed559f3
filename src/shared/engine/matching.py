"""1:N identification: match face embeddings against a gallery of enrolled people, vectorised."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """A person and the distance from the query face to that person's closest enrolled face."""

    person: str
    distance: float

    def to_dict(self) -> dict[str, object]:
        return {"person": self.person, "distance": round(self.distance, 4)}


@dataclass(frozen=True)
class Match:
    """Who a face is (None when unknown), how close, and the nearest few people."""

    person: str | None
    distance: float | None
    candidates: list[Candidate]


class Gallery:
    """Enrolled embeddings grouped by person, ready for fast 1:N matching."""

    def __init__(self, people: list[str], embeddings: np.ndarray, starts: np.ndarray) -> None:
        self.people = people  # distinct person names, sorted
        self.embeddings = embeddings  # (n, 128) float32, rows grouped by person
        self.starts = starts  # index of each person's first row
        self._sq_norms = np.einsum("ij,ij->i", embeddings, embeddings)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, np.ndarray]]) -> "Gallery":
        """Build from (person, embedding) pairs in any order."""
        items = sorted(pairs, key=lambda pair: pair[0])
        if not items:
            return cls([], np.zeros((0, 128), dtype=np.float32), np.zeros(0, dtype=np.intp))
        names = [person for person, _ in items]
        embeddings = np.asarray([e for _, e in items], dtype=np.float32).reshape(len(items), -1)
        people, starts = np.unique(np.asarray(names, dtype=object), return_index=True)
        return cls([str(p) for p in people], embeddings, starts.astype(np.intp))

    @property
    def size(self) -> int:
        """How many faces are enrolled."""
        return int(self.embeddings.shape[0])

    def person_distances(self, queries: np.ndarray) -> np.ndarray:
        """(q, people) matrix: distance from each query to each person's closest enrolled face."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, 128)
        squared = (
            np.einsum("ij,ij->i", queries, queries)[:, None] + self._sq_norms[None, :] - 2.0 * queries @ self.embeddings.T
        )
        distances = np.sqrt(np.maximum(squared, 0.0))
        return np.minimum.reduceat(distances, self.starts, axis=1)


def identify(queries: np.ndarray, gallery: Gallery, threshold: float = 0.6, top_k: int = 3) -> list[Match]:
    """Match each query embedding to the nearest person, or None when farther than `threshold`."""
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, 128)
    if gallery.size == 0:
        return [Match(None, None, []) for _ in range(queries.shape[0])]
    by_person = gallery.person_distances(queries)
    k = max(1, min(top_k, by_person.shape[1]))
    matches = []
    for row in by_person:
        nearest = np.argpartition(row, k - 1)[:k] if k < row.size else np.arange(row.size)
        nearest = nearest[np.argsort(row[nearest], kind="stable")]
        candidates = [Candidate(gallery.people[i], float(row[i])) for i in nearest]
        best = candidates[0]
        person = best.person if best.distance <= threshold else None
        matches.append(Match(person, best.distance, candidates))
    return matches
