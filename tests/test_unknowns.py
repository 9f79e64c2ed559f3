"""Unknown faces remembered and grouped (issue 15), through the real recognize handler against moto's
server, on the real photos of ../shared/faces/people with nobody enrolled."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from support.lambda_events import context, redelivered
from support.moto import MotoResources, moto_resources

from handlers import recognize
from shared.aws import gallery_cache, gallery_snapshot
from shared.aws.gallery_table import GalleryFace
from shared.aws.unknowns_table import UnknownFace, UnknownStore, face_id
from lambdaface.unknowns import face_crop
from shared.config import EngineConfig, current_config
from shared.engine.decode import decode_image
from shared.engine.faces import find_faces
from shared.pipeline import unknowns


@pytest.fixture
def remembering(moto_endpoint: str) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true") as fresh:
        yield fresh
    gallery_cache.forget_cache()


def people_photos(labels: list[dict[str, str]]) -> dict[str, str]:
    """people/ photo -> the one person in it."""
    return {row["path"]: row["people"] for row in labels if row["path"].startswith("people/")}


def recognize_all(aws: MotoResources, faces_dir: Path, rels: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for rel in rels:
        key = f"queries/{rel}"
        aws.put(key, (faces_dir / rel).read_bytes())
        assert recognize.handler(aws.event(key), context()) == {"batchItemFailures": []}
        found[rel] = aws.result(key)
    return found


def store_of(aws: MotoResources) -> UnknownStore:
    return unknowns.store_for(current_config(), aws.bucket)


def face_items(aws: MotoResources) -> list[dict[str, Any]]:
    return [i for i in aws.scan(aws.unknowns_table) if not i["person"].startswith("#")]


def purity_and_completeness(truth: dict[str, str], cluster_of: dict[str, str]) -> tuple[float, float]:
    """Purity: faces in their cluster's majority person; completeness: faces in their person's majority cluster."""
    def majority_share(group_of: dict[str, str], label_of: dict[str, str]) -> float:
        groups: dict[str, list[str]] = {}
        for item, group in group_of.items():
            groups.setdefault(group, []).append(label_of[item])
        return sum(max(labels.count(x) for x in set(labels)) for labels in groups.values()) / len(group_of)

    return majority_share(cluster_of, truth), majority_share(truth, cluster_of)


def test_each_person_lands_in_one_cluster_and_no_cluster_mixes_two(remembering: MotoResources, faces_dir: Path,
                                                                     labels: list[dict[str, str]]) -> None:
    truth = people_photos(labels)
    results = recognize_all(remembering, faces_dir, sorted(truth))
    cluster_of = {}
    for rel, doc in results.items():
        assert doc["status"] == "succeeded" and len(doc["faces"]) == 1, rel
        face = doc["faces"][0]
        assert face["person"] is None and face["cluster"].startswith("u-"), doc
        cluster_of[rel] = face["cluster"]
    purity, completeness = purity_and_completeness(truth, cluster_of)
    print(f"\n{len(truth)} photos of {len(set(truth.values()))} people -> {len(set(cluster_of.values()))} clusters; "
          f"purity {purity:.3f}, completeness {completeness:.3f}")
    assert (purity, completeness) == (1.0, 1.0)
    listed = unknowns.clusters(store_of(remembering))
    by_person = {truth[rel]: cluster_of[rel] for rel in truth}
    assert {row["cluster"]: row["faces"] for row in listed} == {
        c: sum(1 for rel in truth if cluster_of[rel] == c) for c in by_person.values()}
    obama = next(row for row in listed if row["cluster"] == by_person["obama"])
    assert obama["sources"] == sorted(f"queries/{rel}" for rel in truth if truth[rel] == "obama")
    # The hourly sweep re-groups: nothing here to merge, and no id changes.
    assert unknowns.sweep(config=current_config())["merged"] == 0
    assert {row["cluster"] for row in unknowns.clusters(store_of(remembering))} == set(by_person.values())


def test_a_redelivered_recognition_remembers_nothing_twice(remembering: MotoResources, faces_dir: Path) -> None:
    key = "queries/kit1.jpg"
    remembering.put(key, (faces_dir / "people/kit_harington/kit1.jpg").read_bytes())
    event = remembering.event(key)
    recognize.handler(event, context())
    first = remembering.result(key)["faces"][0]["cluster"]
    recognize.handler({"Records": [redelivered(event["Records"][0], 2)]}, context())
    assert remembering.result(key)["faces"][0]["cluster"] == first
    assert [(i["person"], i["source"]) for i in face_items(remembering)] == [(first, key)]


def test_a_second_unknown_in_the_same_photo_never_shares_a_cluster(remembering: MotoResources, faces_dir: Path) -> None:
    doc = recognize_all(remembering, faces_dir, ["multi/obama_and_biden.jpg"])["multi/obama_and_biden.jpg"]
    assert len(doc["faces"]) == 3
    assert len({f["cluster"] for f in doc["faces"]}) == 3


def test_regroup_merges_split_clusters_and_the_old_id_still_resolves(remembering: MotoResources, photos: Any) -> None:
    """Two workers that saw the same new person at once started two clusters: the sweep merges them."""
    store = store_of(remembering)
    kit = [photos.faces(f"people/kit_harington/kit{i}.jpg")[0] for i in (1, 2, 3)]
    split = ["u-00000000000a", "u-00000000000b", "u-00000000000b"]
    for n, (face, cluster) in enumerate(zip(kit, split)):
        store.remember(UnknownFace(face_id("queries/k.jpg", "e", str(n)), cluster, "queries/k.jpg",
                                   face.box.to_dict(), f"2026-11-28T00:00:0{n}.000Z", embedding=face.embedding), "", "")
    merges = unknowns.regroup(store, current_config().pipeline)
    assert merges == {"u-00000000000a": "u-00000000000b"}  # into the cluster with more faces
    assert store.resolve("u-00000000000a") == "u-00000000000b"
    assert {i["person"] for i in face_items(remembering)} == {"u-00000000000b"}
    assert [row["cluster"] for row in unknowns.clusters(store)] == ["u-00000000000b"]
    gallery_cache.forget_cache()  # a cold worker sees the merge too
    assert people(store) == {"u-00000000000b"}


def test_forgetting_a_cluster_leaves_nothing_of_it(moto_endpoint: str, faces_dir: Path) -> None:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_GALLERY_COMPACT_EVERY="1") as aws:
        docs = recognize_all(aws, faces_dir, ["people/obama/obama.jpg", "people/obama/obama2.jpg",
                                              "people/biden/biden.jpg", "people/obama/obama3.jpg"])
        obama = docs["people/obama/obama.jpg"]["faces"][0]["cluster"]
        store = store_of(aws)
        before = aws.scan(aws.unknowns_table)  # the checks below can see an embedding where there is one
        assert [i for i in before if i["person"].startswith("#log") and i.get("face_person") == obama and "vector" in i]
        assert obama in people(store)
        assert unknowns.forget_cluster(store, current_config().pipeline, obama) == 3
        assert {i["person"] for i in face_items(aws)} == {docs["people/biden/biden.jpg"]["faces"][0]["cluster"]}
        assert_no_embedding_of(aws, store, obama, expected_rows=1)
        gallery_cache.forget_cache()


def assert_no_embedding_of(aws: MotoResources, store: UnknownStore, cluster: str, expected_rows: int) -> None:
    """The cluster is in no face item, no log entry's vector, no snapshot, no worker's gallery."""
    items = aws.scan(aws.unknowns_table)
    assert not [i for i in items if i["person"] == cluster]
    assert not [i for i in items if i["person"].startswith("#log") and i.get("face_person") == cluster and "vector" in i]
    rows = 0
    for table in store.partitions:
        snapshots = gallery_snapshot.prefixes(aws.bucket, table.snapshot_root)
        assert len(snapshots) <= 1, "a replaced snapshot is deleted"
        for prefix in snapshots:
            gallery, _ = gallery_snapshot.read(aws.bucket, prefix)
            assert cluster not in gallery.people
            rows += gallery.size
    assert rows <= expected_rows
    assert cluster not in people(store)


def people(store: UnknownStore) -> set[str]:
    """The clusters a worker's galleries hold."""
    return {c for gallery in store.galleries() for c in gallery.people}


def snapshot_rows(aws: MotoResources, store: UnknownStore) -> int | None:
    """Faces in the published snapshots of every partition (None: no snapshot at all)."""
    found = [gallery_snapshot.read(aws.bucket, prefix)[0].size for table in store.partitions
             for prefix in gallery_snapshot.prefixes(aws.bucket, table.snapshot_root)]
    return sum(found) if found else None


def test_with_remembering_off_nothing_is_stored(aws: MotoResources, faces_dir: Path) -> None:
    doc = recognize_all(aws, faces_dir, ["people/rose_leslie/rose1.jpg"])["people/rose_leslie/rose1.jpg"]
    assert doc["faces"][0]["person"] is None and "cluster" not in doc["faces"][0]
    assert aws.scan(aws.unknowns_table) == []
    assert not aws.keys("unknowns/")


def test_switching_remembering_off_forgets_everything_kept(moto_endpoint: str, faces_dir: Path) -> None:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_GALLERY_COMPACT_EVERY="1") as aws:
        recognize_all(aws, faces_dir, ["people/kit_harington/kit1.jpg", "people/rose_leslie/rose1.jpg",
                                       "people/kit_harington/kit2.jpg"])
        store = store_of(aws)
        store.record_merge("u-000000000001", "u-000000000002", 30)
        store.mark_named("u-000000000003", "someone", 30)
        assert snapshot_rows(aws, store), "a snapshot holds the faces"
        with pytest.MonkeyPatch.context() as mp:  # undone before moto_resources' own (a fixture's would leak "true")
            mp.setenv("LAMBDAFACE_REMEMBER_UNKNOWNS", "false")
            report = unknowns.sweep(config=current_config())
        assert report == {"remembering": False, "forgotten": 3, "complete": True}
        assert aws.scan(aws.unknowns_table) == []  # faces, log, order items, merge and naming records
        assert not aws.keys("unknowns/")  # every snapshot
        gallery_cache.forget_cache()
        assert people(store) == set()


def test_faces_older_than_the_retention_are_forgotten(remembering: MotoResources, photos: Any) -> None:
    store = store_of(remembering)
    face = photos.faces("people/kit_harington/kit1.jpg")[0]
    old = UnknownFace(face_id("queries/old.jpg", "e", "0"), "u-0000000000aa", "queries/old.jpg", face.box.to_dict(),
                      "2020-01-01T00:00:00.000Z", embedding=face.embedding)
    new = UnknownFace(face_id("queries/new.jpg", "e", "0"), "u-0000000000bb", "queries/new.jpg", face.box.to_dict(),
                      "2099-01-01T00:00:00.000Z", embedding=np.asarray(face.embedding) * 0.0 + 0.1)
    store.remember(old, "", "")
    store.remember(new, "", "")
    report = unknowns.sweep(config=current_config())
    assert report["expired"] == 1 and report["complete"]
    assert [i["source"] for i in face_items(remembering)] == ["queries/new.jpg"]


def test_an_unknown_in_a_video_is_remembered_once_per_track_and_joins_its_photo_cluster(
        moto_endpoint: str, faces_dir: Path, photos: Any, tmp_path: Path) -> None:
    """obama is enrolled, biden is not: biden's 2 s (two segments) become one cluster, which a photo
    of biden then joins; the appearance names the cluster."""
    from test_video_pipeline import scenes_video, video_stack

    obama = [GalleryFace("obama", "models/obama/obama.jpg", photos.faces("people/obama/obama.jpg")[0].embedding)]
    with video_stack(moto_endpoint, obama, LAMBDAFACE_REMEMBER_UNKNOWNS="true") as vstack:
        vstack.upload("queries/scenes.mp4", scenes_video(tmp_path / "s.mp4", faces_dir).read_bytes())
        vstack.run_all()
        result = vstack.result("queries/scenes.mp4")
        assert result["status"] == "succeeded" and result["people"] == ["obama"]
        (known, unknown) = result["appearances"]
        assert known["person"] == "obama" and unknown["person"] is None
        cluster = unknown["cluster"]
        assert unknown["intervals"] == [[2.0, 4.0]]
        biden_faces = [f for frame in result["frames"] for f in frame["faces"] if frame["t"] >= 2]
        assert len(biden_faces) == 4 and {f.get("cluster") for f in biden_faces} == {cluster}
        items = face_items(vstack.aws)
        assert len(items) == 2 and {i["person"] for i in items} == {cluster}  # one face per segment's track
        assert all(i["source"] == "queries/scenes.mp4" and 2.0 <= i["t"] < 4.0 for i in items)
        doc = recognize_all(vstack.aws, faces_dir, ["people/biden/biden.jpg"])["people/biden/biden.jpg"]
        assert doc["faces"][0]["cluster"] == cluster
        # `name` and `unknowns show` crop a video's face from its frame, read with ranged GETs.
        for face in store_of(vstack.aws).cluster_faces(cluster):
            crop = face_crop(vstack.aws.bucket, face)
            (found,) = find_faces(decode_image(crop, EngineConfig()), EngineConfig())
            assert np.linalg.norm(found.embedding - photos.faces("people/biden/biden2.jpg")[0].embedding) < 0.45
        gallery_cache.forget_cache()


def test_the_sweep_forgets_faces_that_joined_a_cluster_while_it_was_named(remembering: MotoResources,
                                                                          photos: Any) -> None:
    store = store_of(remembering)
    kit = photos.faces("people/kit_harington/kit1.jpg")[0]
    late = UnknownFace(face_id("queries/late.jpg", "e", "0"), "u-0000000000cc", "queries/late.jpg", kit.box.to_dict(),
                       "2099-01-01T00:00:00.000Z", embedding=kit.embedding)
    store.remember(late, "", "")
    store.mark_named("u-0000000000cc", "kit", 30)
    assert unknowns.sweep(config=current_config())["expired"] == 1
    assert face_items(remembering) == []


def test_the_hourly_regroup_looks_only_at_clusters_that_new_faces_touch(remembering: MotoResources, photos: Any) -> None:
    """Two clusters of kit seen before the last re-grouping stay apart (a full regroup would merge
    them; the hourly one does not look); a new face of kit near both makes the sweep merge all three."""
    import time as clock

    from shared.clock import iso

    store = store_of(remembering)
    kit = [photos.faces(f"people/kit_harington/kit{i}.jpg")[0] for i in (1, 2, 3)]
    now = clock.time()

    def remember(n: int, cluster: str, seen: float) -> None:
        store.remember(UnknownFace(face_id(f"queries/kit{n}.jpg", "e", "0"), cluster, f"queries/kit{n}.jpg",
                                   kit[n].box.to_dict(), iso(seen), embedding=kit[n].embedding), "", "")

    remember(0, "u-00000000000a", now)
    remember(1, "u-00000000000b", now)
    store.set_regrouped_at(iso(now + 3600), 30)  # as if the last run were after both
    assert unknowns.sweep(config=current_config())["merged"] == 0
    assert {i["person"] for i in face_items(remembering)} == {"u-00000000000a", "u-00000000000b"}
    remember(2, "u-00000000000c", now + 7200)
    assert unknowns.sweep(config=current_config())["merged"] == 2
    assert len({i["person"] for i in face_items(remembering)}) == 1


def test_a_videos_merge_names_one_cluster_per_unknown_person(remembering: MotoResources, photos: Any) -> None:
    """Segments analysed at the same time each started a cluster for biden; the merge unifies them
    (and leaves kit, another unknown person, alone)."""
    store = store_of(remembering)
    faces = {name: photos.faces(rel)[0] for name, rel in (
        ("biden1", "people/biden/biden.jpg"), ("biden2", "people/biden/biden2.jpg"), ("kit", "people/kit_harington/kit1.jpg"))}
    clusters = {"biden1": "u-00000000000a", "biden2": "u-00000000000b", "kit": "u-00000000000c"}
    for n, (name, face) in enumerate(faces.items()):
        store.remember(UnknownFace(face_id("queries/v.mp4", "e", f"s{n}t0"), clusters[name], "queries/v.mp4",
                                   face.box.to_dict(), "2099-01-01T00:00:00.000Z", t=float(n),
                                   embedding=face.embedding), "", "")
    frames = [{"t": float(n), "faces": [{"person": None, "cluster": clusters[name]}]} for n, name in enumerate(faces)]
    unknowns.unify_video(current_config(), remembering.bucket, frames)
    biden = {frames[0]["faces"][0]["cluster"], frames[1]["faces"][0]["cluster"]}
    assert len(biden) == 1 and biden <= {"u-00000000000a", "u-00000000000b"}
    assert frames[2]["faces"][0]["cluster"] == "u-00000000000c"
    assert {i["person"] for i in face_items(remembering)} == biden | {"u-00000000000c"}
    unknowns.unify_video(current_config(), remembering.bucket, frames)  # a redelivered merge changes nothing
    assert {frames[0]["faces"][0]["cluster"], frames[1]["faces"][0]["cluster"]} == biden


@pytest.mark.parametrize("older_looks_first", [True, False])
def test_two_recognitions_that_start_a_cluster_for_one_person_at_once_end_in_one(
        remembering: MotoResources, photos: Any, older_looks_first: bool) -> None:
    """Both assigned before either was stored, so each started a cluster; whichever looks second
    sees the other, and the newer cluster joins the older (ids sort by creation)."""
    from shared.engine.clustering import new_cluster_id

    store = store_of(remembering)
    older, newer = new_cluster_id(now_ms=1_795_000_000_000), new_cluster_id(now_ms=1_795_000_000_050)
    faces = []
    for n, cluster in ((1, older), (2, newer)):
        face = photos.faces(f"people/kit_harington/kit{n}.jpg")[0]
        faces.append(UnknownFace(face_id(f"queries/kit{n}.jpg", "e", "0"), cluster, f"queries/kit{n}.jpg",
                                 face.box.to_dict(), "2099-01-01T00:00:00.000Z", embedding=face.embedding))
        store.remember(faces[-1], "", "")
    p = current_config().pipeline
    order = faces if older_looks_first else faces[::-1]
    results = {face.cluster: unknowns.join_concurrent(store, p, face) for face in order}
    assert results == {older: older, newer: older}
    assert {i["person"] for i in face_items(remembering)} == {older}
    assert store.resolve(newer) == older
