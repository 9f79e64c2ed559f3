"""1:N identification: match face embeddings against a gallery of enrolled people, vectorised.

The Gallery is a row store that changes in place: one row per enrolled image (labelled by a key,
e.g. its S3 key), a person id per row, free rows reused. Search is exact: squared distances to
every row in one matrix product, the nearest rows by `argpartition`, grouped by person.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

DIM = 128


@dataclass(frozen=True)
class Candidate:
    """A person and the distance from the query face to that person's closest enrolled face."""

    person: str
    distance: float

    def to_dict(self) -> dict[str, object]:
        return {"person": self.person, "distance": round(self.distance, 4)}


@dataclass(frozen=True)
class Match:
    """Who a face is (None when unknown), how close, and the nearest few people. `nearest_taken`:
    its nearest person went to a nearer face of the same image (`one_face_per_person`)."""

    person: str | None
    distance: float | None
    candidates: list[Candidate]
    nearest_taken: bool = False


class Gallery:
    """Enrolled embeddings, one row per key, changed in place (`put`, `remove`)."""

    def __init__(self, capacity: int = 0) -> None:
        capacity = max(16, capacity)
        self.embeddings = np.zeros((capacity, DIM), dtype=np.float32)
        self._sq = np.full(capacity, np.inf, dtype=np.float32)  # inf: a free row never matches
        self.person_ids = np.full(capacity, -1, dtype=np.int32)
        self.names: list[str] = []  # person id -> name
        self._ids: dict[str, int] = {}
        self._counts = np.zeros(16, dtype=np.int64)  # person id -> live rows
        self.keys: list[str | None] = []  # row -> key
        self._rows: dict[str, int] = {}  # key -> row
        self._free: list[int] = []

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, np.ndarray]]) -> "Gallery":
        """Build from (person, embedding) pairs in any order (rows keyed by their position)."""
        items = list(pairs)
        gallery = cls(len(items))
        for i, (person, embedding) in enumerate(items):
            gallery.put(f"#{i}", person, embedding)
        return gallery

    @classmethod
    def from_arrays(cls, embeddings: np.ndarray, person_ids: np.ndarray, names: list[str], keys: list[str],
                    spare: int = 0) -> "Gallery":
        """Adopt arrays (a snapshot's) without per-row work; `spare` extra rows for changes."""
        n = len(keys)
        gallery = cls(0)
        if spare or embeddings.shape[0] < n:
            grown = np.zeros((n + spare, DIM), dtype=np.float32)
            grown[:n] = embeddings[:n]
            embeddings = grown
        gallery.embeddings = embeddings
        gallery._sq = np.full(embeddings.shape[0], np.inf, dtype=np.float32)
        gallery._sq[:n] = np.einsum("ij,ij->i", embeddings[:n], embeddings[:n])
        gallery.person_ids = np.full(embeddings.shape[0], -1, dtype=np.int32)
        gallery.person_ids[:n] = person_ids[:n]
        gallery.names = list(names)
        gallery._ids = {name: i for i, name in enumerate(names)}
        gallery._counts = np.bincount(person_ids[:n], minlength=max(16, len(names))).astype(np.int64)
        gallery.keys = list(keys)
        gallery._rows = {key: i for i, key in enumerate(keys)}
        return gallery

    @property
    def size(self) -> int:
        """How many faces are enrolled."""
        return len(self._rows)

    @property
    def people(self) -> list[str]:
        """Distinct enrolled person names, sorted."""
        return sorted(self.names[i] for i in np.flatnonzero(self._counts[:len(self.names)] > 0))

    def row_of(self, key: str) -> int | None:
        return self._rows.get(key)

    def put(self, key: str, person: str, embedding: np.ndarray) -> None:
        """Enroll (or replace) the face labelled `key`."""
        self.remove(key)
        pid = self._ids.get(person)
        if pid is None:
            pid = self._ids[person] = len(self.names)
            self.names.append(person)
            if pid >= self._counts.size:
                self._counts = np.concatenate([self._counts, np.zeros(max(16, pid // 4), np.int64)])
        row = self._free.pop() if self._free else self._append_row()
        vector = np.asarray(embedding, dtype=np.float32).reshape(DIM)
        self.embeddings[row] = vector
        self._sq[row] = float(vector @ vector)
        self.person_ids[row] = pid
        self.keys[row] = key
        self._rows[key] = row
        self._counts[pid] += 1

    def remove(self, key: str) -> bool:
        """Drop the face labelled `key` (its row is zeroed); False when there was none."""
        row = self._rows.pop(key, None)
        if row is None:
            return False
        self._counts[int(self.person_ids[row])] -= 1
        self.embeddings[row] = 0.0
        self._sq[row] = np.inf
        self.person_ids[row] = -1
        self.keys[row] = None
        self._free.append(row)
        return True

    def _append_row(self) -> int:
        row = len(self.keys)
        if row >= self.embeddings.shape[0]:
            capacity = max(16, row + row // 8)
            self.embeddings = np.concatenate([self.embeddings, np.zeros((capacity - row, DIM), np.float32)])
            self._sq = np.concatenate([self._sq, np.full(capacity - row, np.inf, np.float32)])
            self.person_ids = np.concatenate([self.person_ids, np.full(capacity - row, -1, np.int32)])
        self.keys.append(None)
        return row

    def live(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows, person ids, keys) of the live faces, in row order."""
        used = len(self.keys)
        rows = np.flatnonzero(self.person_ids[:used] >= 0)
        return rows, self.person_ids[rows], [self.keys[i] for i in rows]  # type: ignore[misc]

    @property
    def live_people(self) -> int:
        return int(np.count_nonzero(self._counts))

    def squared_distances(self, queries: np.ndarray) -> np.ndarray:
        """(q, used rows): squared distances from each query to every row (inf for a free row), in
        one pass over the matrix whatever the number of queries."""
        used = len(self.keys)
        q = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
        products = q @ self.embeddings[:used].T
        products *= -2.0
        products += self._sq[:used][None, :]
        products += np.einsum("ij,ij->i", q, q)[:, None]
        return products


def _nearest_people(gallery: Gallery, d2: np.ndarray, k: int) -> list[Candidate]:
    """The k nearest people (by their closest face) given one query's squared distances, exact."""
    live_people = gallery.live_people
    m = min(d2.size, max(64, 16 * k))
    while True:
        rows = np.argpartition(d2, m - 1)[:m] if m < d2.size else np.arange(d2.size)
        rows = rows[np.argsort(d2[rows], kind="stable")]
        found: dict[int, float] = {}
        for row in rows:
            pid = int(gallery.person_ids[row])
            if pid >= 0 and pid not in found:
                found[pid] = float(d2[row])
                if len(found) == k:
                    break
        if len(found) >= min(k, live_people) or m >= d2.size:
            break
        m = min(d2.size, m * 8)  # one person owns the nearest m rows: look further (still exact)
    return [Candidate(gallery.names[pid], float(np.sqrt(max(d, 0.0)))) for pid, d in found.items()]


def identify(queries: np.ndarray, gallery: Gallery, threshold: float = 0.6, top_k: int = 3) -> list[Match]:
    """Match each query embedding to the nearest person, or None when farther than `threshold`."""
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
    if gallery.size == 0:
        return [Match(None, None, []) for _ in range(queries.shape[0])]
    k = max(1, top_k)
    matches = []
    for d2 in gallery.squared_distances(queries):
        candidates = _nearest_people(gallery, d2, k)
        best = candidates[0]
        matches.append(Match(best.person if best.distance <= threshold else None, best.distance, candidates))
    return matches


def needs_review(distance: float | None, threshold: float, band: float) -> bool:
    """Whether a face's `distance` (to the person it was named, or to its nearest person when it is
    nobody) lies within `band` of `threshold`, ends included: the decision could have gone either
    way, so a person should look (the review queue; `band` 0 marks nothing)."""
    return distance is not None and band > 0 and abs(distance - threshold) <= band + 1e-9  # 0.56 from 0.6 is 0.04


def verify(queries: np.ndarray, gallery: Gallery, person: str, threshold: float = 0.6) -> list[Match]:
    """1:1 verification: each query against `person`'s faces only (their nearest face's distance);
    `person` named when within `threshold`. A person with no face in the gallery: no candidate."""
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
    pid = gallery._ids.get(person)
    used = len(gallery.keys)
    rows = np.flatnonzero(gallery.person_ids[:used] == pid) if pid is not None else np.empty(0, np.int64)
    if rows.size == 0:
        return [Match(None, None, []) for _ in range(queries.shape[0])]
    matches = []
    for d2 in gallery.squared_distances(queries):
        distance = float(np.sqrt(max(float(d2[rows].min()), 0.0)))
        matches.append(Match(person if distance <= threshold else None, distance, [Candidate(person, distance)]))
    return matches


def one_face_per_person(matches: list[Match], threshold: float) -> list[Match]:
    """The faces of one image (a photo, a video frame), named so that no person is named twice.

    Every (face, candidate) pair within `threshold` is taken nearest first: a person goes to the
    nearest face that matches them; a face whose nearest person went to a nearer face takes its next
    candidate within `threshold`, or none (`person` None, `distance` still its nearest candidate's).
    Candidates are the top_k `identify` listed. A face named as `identify` named it is returned as is.
    """
    pairs = sorted(
        (c.distance, face, rank, c.person)
        for face, match in enumerate(matches)
        for rank, c in enumerate(match.candidates)
        if c.distance <= threshold
    )
    given: dict[int, Candidate] = {}
    named: set[str] = set()
    for _, face, rank, person in pairs:
        if face not in given and person not in named:
            given[face] = matches[face].candidates[rank]
            named.add(person)
    out = []
    for face, match in enumerate(matches):
        got = given.get(face)
        if (got.person if got else None) == match.person:
            out.append(match)
        elif got is not None:
            out.append(Match(got.person, got.distance, match.candidates, nearest_taken=True))
        else:
            out.append(Match(None, match.distance, match.candidates, nearest_taken=True))
    return out
