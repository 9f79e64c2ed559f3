"""The person index's races, each as a deterministic interleaving against moto's server: a thread
is held at the dangerous step (an Event) while the other writer runs, then let go.

1. a cluster's entries being moved (naming, regroup) while its source is recognized again;
2. two results of one source written at once (a re-upload while the previous job finishes).
Either way no entry may be left that the source's newest result does not list.
3. a person forgotten while a recognition that matched them (its gallery still held them) writes
its entries: none of theirs may be left.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest
from support.moto import MotoResources, moto_resources

from shared.aws.gallery_table import GalleryTable
from shared.aws.people_index_table import PeopleIndexTable
from shared.config import current_config
from shared.pipeline import people_index

SOURCE = "queries/race.jpg"
CLUSTER = "u-0a1b2c3d4e5f6071"
BOX = {"left": 1, "top": 2, "width": 30, "height": 30}


def document(job_id: str, at: str, faces: list[dict[str, Any]]) -> dict[str, Any]:
    return {"job_id": job_id, "kind": "recognize", "status": "succeeded", "source": SOURCE, "finished_at": at,
            "faces": faces}


@pytest.fixture
def index(moto_endpoint: str, template: dict[str, Any]) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint) as aws:
        for resource, name in (("PeopleIndexTable", f"people-{aws.bucket}"), ("GalleryTable", f"gallery-{aws.bucket}")):
            p = template["Resources"][resource]["Properties"]
            aws.dynamodb.create_table(TableName=name, KeySchema=p["KeySchema"], AttributeDefinitions=p["AttributeDefinitions"],
                                      BillingMode=p["BillingMode"])
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", f"people-{aws.bucket}")
            mp.setenv("GALLERY_TABLE", f"gallery-{aws.bucket}")
            aws.index = f"people-{aws.bucket}"  # type: ignore[attr-defined]
            aws.gallery = f"gallery-{aws.bucket}"  # type: ignore[attr-defined]
            yield aws


def entries(aws: Any) -> set[tuple[str, str]]:
    return {(i["pk"], i["sk"]) for i in aws.scan(aws.index) if i["sk"] != "#source"}


def hold(mp: pytest.MonkeyPatch, method: str, in_thread: str) -> tuple[threading.Event, threading.Event]:
    """Hold `in_thread` at its first call of PeopleIndexTable.<method> until `go` is set; `reached` says it is there."""
    original: Callable[..., Any] = getattr(PeopleIndexTable, method)
    reached, go = threading.Event(), threading.Event()

    def held(self: PeopleIndexTable, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == in_thread and not reached.is_set():
            reached.set()
            assert go.wait(30)
        return original(self, *args, **kwargs)

    mp.setattr(PeopleIndexTable, method, held)
    return reached, go


def run_held(target: Callable[[], Any], reached: threading.Event, go: threading.Event, meanwhile: Callable[[], Any]) -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=body, name="held")
    thread.start()
    assert reached.wait(30)
    meanwhile()
    go.set()
    thread.join(30)
    assert not errors, errors


def enrolled(aws: Any, person: str) -> None:
    """A face of `person` in the gallery table (all `has_faces` reads)."""
    aws.dynamodb.put_item(TableName=aws.gallery, Item={"person": {"S": person}, "image_key": {"S": f"models/{person}/a.jpg"}})


def test_a_move_racing_a_new_result_of_its_source_leaves_nothing_behind(index: Any) -> None:
    config = current_config()
    enrolled(index, "bob")
    people_index.record(config, document("job1", "2026-01-01T00:00:00.000Z", [{"box": BOX, "person": None, "cluster": CLUSTER}]))
    assert entries(index) == {(f"c#{CLUSTER}", f"2026-01-01T00:00:00.000Z#{SOURCE}#0")}
    with pytest.MonkeyPatch.context() as mp:
        reached, go = hold(mp, "repoint", "held")  # the move has written its copy, not yet repointed the manifest
        newer = document("job2", "2026-01-02T00:00:00.000Z", [{"box": BOX, "person": "bob", "distance": 0.3}])
        run_held(lambda: people_index.move(config.pipeline, CLUSTER, "alice"), reached, go,
                 lambda: people_index.record(config, newer))
    assert entries(index) == {("p#bob", f"2026-01-02T00:00:00.000Z#{SOURCE}#0")}


def test_two_results_of_one_source_at_once_leave_only_the_last_ones(index: Any) -> None:
    config = current_config()
    enrolled(index, "ann")
    enrolled(index, "bob")
    first = document("job1", "2026-01-01T00:00:00.000Z", [{"box": BOX, "person": "ann", "distance": 0.3}])
    second = document("job2", "2026-01-02T00:00:00.000Z", [{"box": BOX, "person": "bob", "distance": 0.3}])
    with pytest.MonkeyPatch.context() as mp:
        reached, go = hold(mp, "put_manifest", "held")  # `first` has read the (empty) manifest, not yet written it
        run_held(lambda: people_index.record(config, first), reached, go, lambda: people_index.record(config, second))
    manifest = PeopleIndexTable(index.index).manifest(SOURCE)
    assert manifest is not None and manifest["done"] and manifest["stale"] == {}
    listed = {(pk, sk) for sk, pk in manifest["entries"].items()}
    assert entries(index) == listed == {("p#ann", f"2026-01-01T00:00:00.000Z#{SOURCE}#0")}  # the last written wins, alone


def test_a_forget_racing_a_recognition_that_matched_the_person_leaves_none_of_their_entries(index: Any) -> None:
    config = current_config()
    enrolled(index, "ann")
    enrolled(index, "obama")
    matched = document("job1", "2026-01-01T00:00:00.000Z", [{"box": BOX, "person": "obama", "distance": 0.3},
                                                            {"box": BOX, "person": "ann", "distance": 0.4}])

    def forget_obama() -> None:  # his last face leaves the gallery, then his entries go (images.forget)
        index.dynamodb.delete_item(TableName=index.gallery, Key={"person": {"S": "obama"}, "image_key": {"S": "models/obama/a.jpg"}})
        people_index.after_forget(config.pipeline, GalleryTable(index.gallery), "obama")

    with pytest.MonkeyPatch.context() as mp:
        reached, go = hold(mp, "put_entries", "held")  # the recognition has matched obama, not yet written his entry
        run_held(lambda: people_index.record(config, matched), reached, go, forget_obama)
    assert entries(index) == {("p#ann", f"2026-01-01T00:00:00.000Z#{SOURCE}#1")}  # ann, still enrolled, keeps hers
    assert people_index.find(index.index, "obama")[0] == []


def test_a_late_result_naming_a_person_being_merged_hands_their_entry_to_the_other(index: Any) -> None:
    """`merge barack obama`: barack's last face is forgotten while a recognition that matched him
    writes its entry; it goes to obama, as the forget's own move would have taken it."""
    config = current_config()
    enrolled(index, "obama")
    assert people_index.begin_merge(config.pipeline, "barack", "obama", armed=True)
    late = document("job1", "2026-01-01T00:00:00.000Z", [{"box": BOX, "person": "barack", "distance": 0.3}])
    with pytest.MonkeyPatch.context() as mp:
        reached, go = hold(mp, "put_entries", "held")
        run_held(lambda: people_index.record(config, late), reached, go,
                 lambda: people_index.after_forget(config.pipeline, GalleryTable(index.gallery), "barack"))
    assert {e for e in entries(index) if not e[0].startswith("m#")} == {("p#obama", f"2026-01-01T00:00:00.000Z#{SOURCE}#0")}


def test_a_face_named_by_hand_keeps_its_entry_though_the_person_is_not_enrolled(index: Any) -> None:
    """`correct --is carol` / `add-face --is carol` name a face without enrolling carol: the check
    against forgotten people (the gallery has no face of carol) must not drop those entries."""
    config = current_config()
    named = document("job1", "2026-01-01T00:00:00.000Z", [
        {"box": BOX, "person": "carol", "distance": None, "candidates": [], "corrected": ["is carol"]},
        {"box": {**BOX, "left": 100}, "person": "dave", "distance": None, "added": True, "named": True},
        {"box": {**BOX, "left": 200}, "person": "erin", "distance": 0.4}])  # matched, and erin has no face: dropped
    people_index.record(config, named)
    assert {pk for pk, _ in entries(index)} == {"p#carol", "p#dave"}
