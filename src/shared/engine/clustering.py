"""Grouping unknown faces into clusters: assign each new face to its nearest cluster, group a video
segment's faces into tracks, and re-group everything with dlib's Chinese whispers (merges only).

A cluster id (`u-` and 16 hex digits, ordered by creation) never changes while faces join it; re-grouping merges whole
clusters into the one with the most faces and never splits one, so an id is only ever retired by
a merge (which the store records, so the old id still resolves). Pure: numpy and dlib only.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Sequence

import numpy as np

from shared.engine.matching import DIM, Gallery, Match, identify

CLUSTER_PREFIX = "u-"
EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
EDGE_BLOCK = 256  # query rows per distance block while building the graph (256 x 10^5 floats: 100 MB)
NEIGHBOURS = 16  # edges kept per face: its nearest later faces within the threshold


def new_cluster_id(now_ms: int | None = None) -> str:
    """A fresh cluster id, ordered by when it was made: `u-` + 10 hex digits of milliseconds since
    2020 + 6 random ones, e.g. `u-0a3b4c5d6e7f8091` (a newer cluster's id sorts after an older one's)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{CLUSTER_PREFIX}{max(0, ms - EPOCH_MS) & 0xFFFFFFFFFF:010x}{uuid.uuid4().hex[:6]}"


def is_cluster_id(text: str) -> bool:
    """True for a well-formed cluster id (`u-` and 12 to 16 lowercase hex digits)."""
    tail = text[len(CLUSTER_PREFIX):]
    return text.startswith(CLUSTER_PREFIX) and 12 <= len(tail) <= 16 and all(c in "0123456789abcdef" for c in tail)


def nearest(queries: np.ndarray, remembered: Sequence[Gallery], threshold: float) -> list[Match]:
    """Each query's nearest remembered face over several galleries (its cluster in `person`, None
    when farther than `threshold`)."""
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
    best = [Match(None, None, []) for _ in range(queries.shape[0])]
    for gallery in remembered:
        if gallery.size == 0:
            continue
        for i, match in enumerate(identify(queries, gallery, threshold, top_k=1)):
            if match.distance is not None and (best[i].distance is None or match.distance < best[i].distance):
                best[i] = match
    return best


def assign(queries: np.ndarray, remembered: Sequence[Gallery], threshold: float) -> list[str]:
    """The cluster of each query face: that of its nearest remembered face when within `threshold`,
    else a new one. The queries are faces of one photo, so two of them never share a cluster: the
    nearer keeps it, the other starts a new one."""
    return assign_marking_new(queries, remembered, threshold)[0]


def assign_marking_new(queries: np.ndarray, remembered: Sequence[Gallery], threshold: float) -> tuple[list[str], list[bool]]:
    """`assign`, and for each face whether its cluster is a new one."""
    matches = nearest(queries, remembered, threshold)
    order = sorted(range(len(matches)), key=lambda i: matches[i].distance if matches[i].person else np.inf)
    taken: set[str] = set()
    clusters, new = [""] * len(matches), [False] * len(matches)
    for i in order:
        cluster = matches[i].person
        if cluster is None or cluster in taken:
            cluster, new[i] = new_cluster_id(), True
        taken.add(cluster)
        clusters[i] = cluster
    return clusters, new


def other_cluster(query: np.ndarray, own: str, remembered: Sequence[Gallery], threshold: float) -> str | None:
    """The cluster of the nearest remembered face within `threshold` that is not in `own`."""
    best: tuple[float, str] | None = None
    for gallery in remembered:
        if gallery.size == 0:
            continue
        (match,) = identify(np.asarray(query, dtype=np.float32).reshape(1, DIM), gallery, threshold, top_k=2)
        for candidate in match.candidates:
            if candidate.person != own and candidate.distance <= threshold and (best is None or candidate.distance < best[0]):
                best = (candidate.distance, candidate.person)
                break
    return best[1] if best else None


def tracks(frames: Sequence[int], embeddings: np.ndarray, threshold: float) -> list[int]:
    """Group faces seen across a video segment's frames (`frames[i]`: the frame of face i, in time
    order) into tracks: a face joins the track of its nearest earlier face within `threshold`,
    unless that track already has a face in the same frame. Returns a track number per face."""
    embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, DIM)
    track_of: list[int] = []
    last_frame: dict[int, int] = {}
    for i in range(len(frames)):
        best, best_d = -1, threshold
        if i:
            d = np.linalg.norm(embeddings[:i] - embeddings[i], axis=1)
            for j in np.argsort(d):
                if d[j] > threshold:
                    break
                if last_frame.get(track_of[j]) != frames[i]:
                    best, best_d = track_of[j], float(d[j])
                    break
        if best < 0:
            best = len(last_frame)
        track_of.append(best)
        last_frame[best] = frames[i]
    return track_of


def edges(embeddings: np.ndarray, threshold: float, neighbours: int = NEIGHBOURS) -> list[tuple[int, int]]:
    """Pairs of faces (i < j) within `threshold`: for each face, its `neighbours` nearest later faces,
    computed a block at a time. At most n x `neighbours` pairs, so one person seen thousands of
    times costs linear, not quadratic, memory (Chinese whispers needs no more)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, DIM)
    sq = np.einsum("ij,ij->i", x, x)
    firsts, seconds = [], []
    for start in range(0, x.shape[0] - 1, EDGE_BLOCK):
        block = x[start:start + EDGE_BLOCK]
        d2 = sq[start:start + len(block), None] - 2.0 * (block @ x[start:].T) + sq[None, start:]
        rows, cols = np.nonzero(d2 <= threshold * threshold)
        later = cols > rows  # cols count from `start`: only later faces, never itself
        rows, cols = rows[later], cols[later]
        order = np.lexsort((d2[rows, cols], rows))  # by face, nearest first
        rows, cols = rows[order], cols[order]
        first_of_row = np.searchsorted(rows, rows, side="left")
        keep = np.arange(rows.size) - first_of_row < neighbours
        firsts.append(rows[keep] + start)
        seconds.append(cols[keep] + start)
    if not firsts:
        return []
    return list(zip(np.concatenate(firsts).tolist(), np.concatenate(seconds).tolist()))


def touched(embeddings: np.ndarray, clusters: Sequence[str], new_rows: Sequence[int], threshold: float) -> set[str]:
    """The clusters a re-grouping must look at after `new_rows` joined: theirs, and those of every
    face within `threshold` of one of them (the only clusters a new face can have linked)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, DIM)
    new = np.asarray(new_rows, dtype=np.int64)
    found = {clusters[i] for i in new}
    sq = np.einsum("ij,ij->i", x, x)
    for start in range(0, new.size, EDGE_BLOCK):
        rows = new[start:start + EDGE_BLOCK]
        d2 = sq[rows, None] - 2.0 * (x[rows] @ x.T) + sq[None, :]
        found.update(clusters[j] for j in np.unique(np.nonzero(d2 <= threshold * threshold)[1]))
    return found


def stacked(galleries: Sequence[Gallery]) -> tuple[np.ndarray, list[str], list[str]]:
    """The live faces of several galleries (a store's partitions) as one matrix, with each row's
    cluster and key."""
    embeddings, clusters, keys = [], [], []
    for gallery in galleries:
        rows, person_ids, row_keys = gallery.live()
        embeddings.append(gallery.embeddings[rows])
        clusters += [gallery.names[i] for i in person_ids]
        keys += row_keys
    return (np.concatenate(embeddings) if embeddings else np.zeros((0, DIM), np.float32)), clusters, keys


def regroup(embeddings: np.ndarray, clusters: Sequence[str], threshold: float,
            first_seen: dict[str, str] | None = None, apart: set[frozenset[str]] | None = None) -> dict[str, str]:
    """Which clusters to merge, as {retired id: surviving id}, from Chinese whispers over the graph
    of faces within `threshold`. Each cluster goes to the group holding most of its faces; the
    clusters of one group merge into the one with the most faces (then the first seen, then the
    smallest id). Nothing is split. `apart`: pairs of clusters never merged (a correction said
    one's face is not the other): a member of a group that is kept apart from one already merged
    there stays on its own."""
    import dlib

    if len(clusters) < 2:
        return {}
    labels = list(dlib.chinese_whispers(edges(embeddings, threshold)))
    top = max(labels, default=-1)
    labels += range(top + 1, top + 1 + len(clusters) - len(labels))  # trailing faces without an edge: alone
    votes: dict[str, Counter] = {}
    for cluster, label in zip(clusters, labels):
        votes.setdefault(cluster, Counter())[label] += 1
    groups: dict[int, list[str]] = {}
    for cluster, counter in votes.items():
        groups.setdefault(counter.most_common(1)[0][0], []).append(cluster)
    seen = first_seen or {}
    merges: dict[str, str] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        ranked = sorted(members, key=lambda c: (-sum(votes[c].values()), seen.get(c, ""), c))
        survivor, joined = ranked[0], [ranked[0]]
        for c in ranked[1:]:
            if not any(frozenset((c, j)) in (apart or ()) for j in joined):
                merges[c] = survivor
                joined.append(c)
    return merges
