"""The scalable gallery: exact search over a row store, snapshots in S3 plus the change log,
freshness through the counter shards, and no scan on the recognition path (moto's server)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
from support.moto import MotoResources, moto_resources
from test_gallery_races import HookProxy

from shared.aws import gallery_cache, gallery_snapshot
from shared.aws.gallery_table import GalleryFace, GalleryTable
from shared.engine.matching import Gallery, identify


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_search_is_exact_against_brute_force() -> None:
    vectors, people = unit_vectors(3000), [f"p{i % 700}" for i in range(3000)]
    gallery = Gallery.from_pairs(zip(people, vectors))
    for key in ("#5", "#77", "#2999"):
        gallery.remove(key)
    live = [i for i in range(3000) if f"#{i}" not in ("#5", "#77", "#2999")]
    queries = unit_vectors(20, seed=1)
    for query, match in zip(queries, identify(queries, gallery, threshold=1.3, top_k=5)):
        nearest: dict[str, float] = {}
        for i in live:
            d = float(np.linalg.norm(vectors[i] - query))
            nearest[people[i]] = min(d, nearest.get(people[i], 9.0))
        want = sorted(nearest.items(), key=lambda kv: kv[1])[:5]
        assert [c.person for c in match.candidates] == [p for p, _ in want]
        assert np.allclose([c.distance for c in match.candidates], [d for _, d in want], atol=1e-4)


def test_one_person_owning_the_nearest_rows_still_gives_top_k() -> None:
    vectors = unit_vectors(400)
    gallery = Gallery.from_pairs([("crowd", v) for v in vectors[:399]] + [("loner", vectors[399])])
    [match] = identify(vectors[0], gallery, top_k=2)
    assert [c.person for c in match.candidates] == ["crowd", "loner"]


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint) as fresh:
        gallery_cache.forget_cache()
        yield fresh
        gallery_cache.forget_cache()


def enroll_synthetic(table: GalleryTable, n: int, start: int = 0) -> np.ndarray:
    vectors = unit_vectors(n, seed=start + 7)
    for i, v in enumerate(vectors, start=start):
        table.put_face(GalleryFace(f"p{i}", f"models/p{i}/x.jpg", v, etag=f"e{i}"))
    return vectors


def test_a_warm_worker_sees_each_change_at_once_and_reads_only_the_log(aws: MotoResources) -> None:
    table = GalleryTable(aws.gallery_table, shards=3)
    enroll_synthetic(table, 5)
    assert gallery_cache.load(table).size == 5
    enroll_synthetic(table, 1, start=5)  # the next recognition, on any shard, sees it
    for _ in range(6):
        assert gallery_cache.load(table).size == 6
    table.apply(_delete("p2"))
    assert gallery_cache.load(table).row_of("models/p2/x.jpg") is None and gallery_cache.load(table).size == 5


def test_compaction_publishes_one_snapshot_and_a_new_worker_loads_it_then_the_log(aws: MotoResources) -> None:
    table = GalleryTable(aws.gallery_table)
    vectors = enroll_synthetic(table, 40)
    assert gallery_cache.compact(table, aws.bucket) == 40
    enroll_synthetic(table, 3, start=40)
    table.apply(_delete("p0"))
    seq = gallery_cache.compact(table, aws.bucket)
    assert seq == 44 and set(gallery_snapshot.prefixes(aws.bucket).values()) == {44}  # the older one is gone
    assert not [k for k in aws.keys() if "00000000000000000040" in k]
    table.apply(_delete("p1"))
    gallery_cache.forget_cache()  # a new worker
    gallery = gallery_cache.load(table)
    assert gallery.size == 41 and gallery.row_of("models/p1/x.jpg") is None
    row = gallery.row_of("models/p7/x.jpg")
    assert row is not None and np.array_equal(gallery.embeddings[row], vectors[7])
    log_seqs = [int(i["image_key"]) for i in aws.scan(aws.gallery_table) if i["person"] == "#log"]
    assert min(log_seqs) == 41  # entries before the replaced snapshot (40) were trimmed


def test_a_worker_behind_the_trimmed_log_reloads_the_snapshot(aws: MotoResources) -> None:
    table = GalleryTable(aws.gallery_table)
    enroll_synthetic(table, 4)
    assert gallery_cache.load(table).size == 4  # warm at change 4
    gallery_cache._states[table.name].seq = 4
    enroll_synthetic(table, 4, start=4)
    gallery_cache.compact(table, aws.bucket)  # snapshot at 8 (our cache moved along: roll it back)
    enroll_synthetic(table, 2, start=8)
    gallery_cache.compact(table, aws.bucket)  # snapshot at 10; log entries up to 8 trimmed
    state = gallery_cache._states[table.name]
    state.seq, stale = 4, Gallery.from_pairs([])
    state.gallery = stale
    gallery = gallery_cache.load(table)
    assert gallery is not stale and gallery.size == 10


def test_recognition_never_scans(aws: MotoResources) -> None:
    table = GalleryTable(aws.gallery_table)
    enroll_synthetic(table, 3)
    gallery_cache.compact(table, aws.bucket)
    enroll_synthetic(table, 1, start=3)
    gallery_cache.forget_cache()
    proxy = HookProxy(aws.endpoint)
    seen: list[str] = []
    proxy.hooks.extend(("before", lambda call: seen.append(call.target or call.method) and False, lambda: None)
                       for _ in range(1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", proxy.url)
        assert gallery_cache.load(table).size == 4  # cold: shard, pointer, snapshot, log
        gallery_cache.load(table)  # warm: one GetItem
    proxy.close()
    assert "Scan" not in seen and seen.count("GET") == 3
    assert seen[-1] == "GetItem"


def _delete(person: str):  # type: ignore[no-untyped-def]
    from shared.aws.gallery_table import Change

    return Change(person, f"models/{person}/x.jpg", "", "9999-12-31T00:00:00.000Z")
