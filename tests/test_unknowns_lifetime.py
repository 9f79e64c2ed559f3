"""How long a remembered unknown face lives (issue 20, item 6 and the alarms), against moto's server on
real photos: each face item expires by DynamoDB TTL a day after its retention (a backstop to the
hourly sweep); a face the TTL removed leaves the change log, the snapshots and the workers at the
next sweep; the sweep publishes whether it finished and the oldest face's age (EMF)."""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest
from support.moto import MotoResources, moto_resources
from test_unknowns_forget import RETIRED, SURVIVOR, face_items, split_kit, store_of, stored_anywhere

from shared import clock
from shared.aws import gallery_cache, gallery_snapshot
from shared.aws.unknowns_table import TTL_MARGIN_S, UnknownFace, face_id
from shared.config import current_config
from shared.pipeline import metrics, unknowns

DAY = 86400


@pytest.fixture
def remembering(moto_endpoint: str) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_GALLERY_COMPACT_EVERY="1",
                        LAMBDAFACE_UNKNOWN_RETENTION_DAYS="7") as fresh:
        yield fresh
    gallery_cache.forget_cache()


def test_every_face_item_expires_a_day_after_its_retention_and_keeps_it_through_a_merge(
        remembering: MotoResources, photos: Any) -> None:
    assert TTL_MARGIN_S == DAY
    faces = split_kit(remembering, photos)
    seen = {f.face_id: clock.epoch(f.seen_at) for f in faces}
    for item in face_items(remembering):
        assert item["expires_at"] == int(seen[item["image_key"]]) + 7 * DAY + DAY, item
    assert unknowns.regroup(store_of(remembering), current_config().pipeline) == {RETIRED: SURVIVOR}
    moved = {i["image_key"]: i for i in face_items(remembering)}
    assert moved[faces[0].face_id]["person"] == SURVIVOR
    assert all(i["expires_at"] == int(seen[k]) + 8 * DAY for k, i in moved.items())


def test_a_face_the_ttl_removed_leaves_the_log_the_snapshots_and_the_workers_at_the_next_sweep(
        remembering: MotoResources, photos: Any) -> None:
    """DynamoDB's TTL deletes a face item without a change: the embedding is still in the change
    log, the published snapshot and the workers' galleries until the sweep finds it."""
    faces = split_kit(remembering, photos)
    gone = faces[1].face_id
    assert any(w.startswith("snapshot") for w in stored_anywhere(remembering, gone))
    remembering.dynamodb.delete_item(TableName=remembering.unknowns_table,  # what TTL does: a plain delete
                                     Key={"person": {"S": SURVIVOR}, "image_key": {"S": gone}})
    assert stored_anywhere(remembering, gone)  # the embedding outlives its item
    report = unknowns.sweep(config=current_config())
    assert stored_anywhere(remembering, gone) == []
    assert report["complete"] and report["orphans"] == 1
    store = store_of(remembering)
    for table in store.partitions:
        assert len(gallery_snapshot.prefixes(remembering.bucket, table.snapshot_root)) <= 1
    # the other faces are untouched
    assert {i["image_key"] for i in face_items(remembering)} == {faces[0].face_id, faces[2].face_id}
    gallery_cache.forget_cache()
    assert sum(g.size for g in store.galleries()) == 2
    assert unknowns.sweep(config=current_config())["orphans"] == 0


def emf(text: str) -> list[dict[str, Any]]:
    return [d for d in (json.loads(line) for line in text.splitlines() if line.startswith("{")) if "_aws" in d]


def sweep_metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    (doc,) = [d for d in emf(capsys.readouterr().out) if metrics.SWEEP_INCOMPLETE in d]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == metrics.NAMESPACE and directive["Dimensions"] == [["service"]]
    for definition in directive["Metrics"]:
        assert metrics.CATALOGUE[definition["Name"]] == (("service",),)
    return doc


def test_the_sweep_publishes_whether_it_finished_and_the_oldest_faces_age(
        remembering: MotoResources, photos: Any, capsys: pytest.CaptureFixture[str]) -> None:
    face = photos.faces("people/kit_harington/kit1.jpg")[0]
    store = store_of(remembering)
    now = time.time()
    for n, age_days in enumerate([2, 9]):  # 9 days: past the 7-day retention, forgotten by this run
        store.remember(UnknownFace(face_id(f"queries/k{n}.jpg", "e", "0"), f"u-00000000000{n}", f"queries/k{n}.jpg",
                                   face.box.to_dict(), clock.iso(now - age_days * DAY), embedding=face.embedding), "", "")
    capsys.readouterr()
    assert unknowns.sweep(config=current_config())["expired"] == 1
    doc = sweep_metrics(capsys)
    assert doc[metrics.SWEEP_INCOMPLETE] == [0.0]
    assert 2 * DAY <= doc[metrics.OLDEST_UNKNOWN_AGE][0] < 2 * DAY + 600
    # out of time at once: not finished, and the face past its retention still counts
    store.remember(UnknownFace(face_id("queries/k9.jpg", "e", "0"), "u-000000000009", "queries/k9.jpg",
                               face.box.to_dict(), clock.iso(now - 9 * DAY), embedding=face.embedding), "", "")
    capsys.readouterr()
    report = unknowns.sweep(deadline_ms=lambda: 0, config=current_config())
    assert report["complete"] is False
    doc = sweep_metrics(capsys)
    assert doc[metrics.SWEEP_INCOMPLETE] == [1.0]
    assert doc[metrics.OLDEST_UNKNOWN_AGE][0] >= 9 * DAY


def test_with_remembering_off_the_sweep_publishes_that_it_finished(moto_endpoint: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with moto_resources(moto_endpoint) as aws:
        capsys.readouterr()
        assert unknowns.sweep(config=current_config())["complete"]
        doc = sweep_metrics(capsys)
        assert doc[metrics.SWEEP_INCOMPLETE] == [0.0] and metrics.OLDEST_UNKNOWN_AGE not in doc
        assert aws.scan(aws.unknowns_table) == []
