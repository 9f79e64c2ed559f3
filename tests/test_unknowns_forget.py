"""A forgotten unknown face stays forgotten (issue 20, items 2 and 3), against moto's server on real
photos: a sweep's regroup that moves a face while `unknowns forget` removes it (two threads, stopped
at the dangerous step), and a client whose clock is 120 s behind S3's."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator

import pytest
from support.lambda_events import batch, context, record, redelivered, s3_event_body
from support.moto import MotoResources, moto_resources

from handlers import recognize
from lambdaface.cli import main as cli_main
from shared import clock
from shared.aws import gallery_cache, gallery_snapshot
from shared.aws.gallery_table import GalleryTable
from shared.aws.unknowns_table import UnknownFace, UnknownStore, face_id
from shared.config import current_config
from shared.pipeline import unknowns

RETIRED, SURVIVOR = "u-00000000000a", "u-00000000000b"


@pytest.fixture
def remembering(moto_endpoint: str) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true", LAMBDAFACE_GALLERY_COMPACT_EVERY="1") as fresh:
        yield fresh
    gallery_cache.forget_cache()


def store_of(aws: MotoResources) -> UnknownStore:
    """A store object of its own (as another process would have)."""
    return unknowns.store_for(current_config(), aws.bucket)


def face_items(aws: MotoResources) -> list[dict[str, Any]]:
    return [i for i in aws.scan(aws.unknowns_table) if not i["person"].startswith("#")]


def stored_anywhere(aws: MotoResources, key: str) -> list[str]:
    """Where face `key` still is: its item, a log entry's vector, a snapshot, a cold worker's gallery."""
    found = [f"item {i['person']}" for i in face_items(aws) if i["image_key"] == key]
    found += [f"log {i['image_key']}" for i in aws.scan(aws.unknowns_table)
              if i["person"].startswith("#log") and i.get("face_key") == key and "vector" in i]
    store = store_of(aws)
    for table in store.partitions:
        for prefix in gallery_snapshot.prefixes(aws.bucket, table.snapshot_root):
            if gallery_snapshot.read(aws.bucket, prefix)[0].row_of(key) is not None:
                found.append(f"snapshot {prefix}")
    gallery_cache.forget_cache()
    found += ["a cold worker's gallery" for g in store.galleries() if g.row_of(key) is not None]
    return found


def split_kit(aws: MotoResources, photos: Any) -> list[UnknownFace]:
    """Three faces of kit in two clusters (two recognitions started one each): a regroup merges
    RETIRED (one face) into SURVIVOR (two)."""
    store, faces = store_of(aws), []
    for n, cluster in enumerate([RETIRED, SURVIVOR, SURVIVOR]):
        face = photos.faces(f"people/kit_harington/kit{n + 1}.jpg")[0]
        faces.append(UnknownFace(face_id(f"queries/kit{n + 1}.jpg", "e", "0"), cluster, f"queries/kit{n + 1}.jpg",
                                 face.box.to_dict(), clock.iso(time.time()), embedding=face.embedding))
        store.remember(faces[-1], "", clock.iso(time.time() - 600))  # recognized 10 minutes ago
    store.settle(1)
    return faces


class Pause:
    """Stops one thread at a step until the other has done its part (a barrier, then an event)."""

    def __init__(self) -> None:
        self.reached = threading.Barrier(2, timeout=60)
        self.go_on = threading.Event()
        self.thread: threading.Thread | None = None
        self.hit = 0

    def here(self) -> None:
        if threading.current_thread() is self.thread and not self.hit:
            self.hit += 1
            self.reached.wait()
            assert self.go_on.wait(60), "the other side never finished"


def run_paused(pause: Pause, work: Callable[[], Any], meanwhile: Callable[[], Any]) -> Any:
    """Run `work` in a thread; when it reaches `pause.here()`, run `meanwhile`, then let it finish."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:  # re-raised below
            out["error"] = exc

    pause.thread = threading.Thread(target=target)
    pause.thread.start()
    pause.reached.wait()
    try:
        out["meanwhile"] = meanwhile()
    finally:
        pause.go_on.set()
        pause.thread.join(120)
    assert not pause.thread.is_alive()
    if "error" in out:
        raise out["error"]
    assert pause.hit == 1, "the paused step was never reached"
    return out["meanwhile"]


@pytest.mark.parametrize("step", ["before the move", "inside the move's transaction"])
def test_a_forget_during_a_regroups_move_is_not_undone(remembering: MotoResources, photos: Any, step: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's regroup has recorded the merge RETIRED -> SURVIVOR and read RETIRED's face; the
    user forgets SURVIVOR (so RETIRED too) before the regroup moves that face: before the move
    starts, or after the move read the face's order item and before its transaction commits (the
    user's clock a little behind the sweep's, so no clock can order the two)."""
    faces = split_kit(remembering, photos)
    moving = faces[0].face_id
    pause = Pause()
    if step == "before the move":
        real_move = UnknownStore.move

        def move(self: UnknownStore, face: UnknownFace, cluster: str) -> Any:
            pause.here()
            return real_move(self, face, cluster)
        monkeypatch.setattr(UnknownStore, "move", move)
    else:
        real_commit = GalleryTable._commit

        def commit(self: GalleryTable, change: Any, order: Any, version: int) -> None:
            if change.image_key == moving and not change.deleted:
                pause.here()
            real_commit(self, change, order, version)
        monkeypatch.setattr(GalleryTable, "_commit", commit)
        real_now = clock.now  # and the user's clock 2 s behind the sweep's (another machine)
        monkeypatch.setattr(clock, "now", lambda: real_now() - (0 if threading.current_thread() is pause.thread else 2))
    p = current_config().pipeline
    forgotten = run_paused(pause, lambda: unknowns.regroup(store_of(remembering), p),
                           lambda: unknowns.forget_cluster(store_of(remembering), p, SURVIVOR))
    assert forgotten == 3
    assert face_items(remembering) == []
    assert stored_anywhere(remembering, moving) == []
    assert unknowns.clusters(store_of(remembering)) == []


def test_a_face_the_ttl_deletes_during_a_move_is_not_stored_again(remembering: MotoResources, photos: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB's TTL deletes the face item (no change, no tombstone) after the move read it and
    before its transaction commits: the move must not write the face back."""
    faces = split_kit(remembering, photos)
    moving = faces[0].face_id
    pause, real_commit = Pause(), GalleryTable._commit

    def commit(self: GalleryTable, change: Any, order: Any, version: int) -> None:
        if change.image_key == moving and not change.deleted:
            pause.here()
        real_commit(self, change, order, version)
    monkeypatch.setattr(GalleryTable, "_commit", commit)

    def expire() -> None:  # what TTL does: a plain delete of the item
        remembering.dynamodb.delete_item(TableName=remembering.unknowns_table,
                                         Key={"person": {"S": RETIRED}, "image_key": {"S": moving}})
    run_paused(pause, lambda: unknowns.regroup(store_of(remembering), current_config().pipeline), expire)
    assert moving not in {i["image_key"] for i in face_items(remembering)}
    assert len(face_items(remembering)) == 2
    assert unknowns.sweep(config=current_config())["orphans"] == 1  # then the sweep forgets the rest of it
    assert stored_anywhere(remembering, moving) == []


def test_a_regroup_still_moves_a_face_that_is_not_forgotten(remembering: MotoResources, photos: Any) -> None:
    """The move's new condition (the face still stored) lets an ordinary merge through, with the
    stored face's S3 event kept on its order item whatever the mover's clock says."""
    faces = split_kit(remembering, photos)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clock, "now", lambda: time.time() - 3600)  # the sweep's clock an hour behind
        assert unknowns.regroup(store_of(remembering), current_config().pipeline) == {RETIRED: SURVIVOR}
    assert {i["person"] for i in face_items(remembering)} == {SURVIVOR}
    assert len(face_items(remembering)) == 3
    gallery_cache.forget_cache()
    assert {c for g in store_of(remembering).galleries() for c in g.people} == {SURVIVOR}
    assert any(g.row_of(faces[0].face_id) is not None for g in store_of(remembering).galleries())


# --- a client clock behind S3's ------------------------------------------------------------------


def s3_event(aws: MotoResources, key: str, sequencer: str) -> dict[str, Any]:
    """The S3 event of `key` as AWS sends it: a sequencer, and S3's own time (now)."""
    body = json.loads(s3_event_body(aws.bucket, key, aws.etag(key), sequencer=sequencer))
    body["Records"][0]["eventTime"] = clock.iso(time.time())
    return batch(record(json.dumps(body)))


def remembered_photo(aws: MotoResources, faces_dir: Any) -> tuple[str, dict[str, Any]]:
    key = "queries/rose1.jpg"
    aws.put(key, (faces_dir / "people/rose_leslie/rose1.jpg").read_bytes())
    event = s3_event(aws, key, "0062A1B2C3D4E5F601")
    assert recognize.handler(event, context()) == {"batchItemFailures": []}
    (face,) = aws.result(key)["faces"]
    assert face["person"] is None and face["cluster"].startswith("u-")
    assert len(face_items(aws)) == 1
    return face["cluster"], event


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's clock (the CLI's, the sweep's) 120 s behind S3's."""
    real = time.time
    monkeypatch.setattr(clock, "now", lambda: real() - 120)


def test_unknowns_forget_with_a_slow_clock_removes_the_face(remembering: MotoResources, faces_dir: Any,
                                                            capsys: pytest.CaptureFixture[str], slow_clock: None) -> None:
    cluster, event = remembered_photo(remembering, faces_dir)
    (key,) = [i["image_key"] for i in face_items(remembering)]
    code = cli_main(["unknowns", "forget", cluster, "--bucket", remembering.bucket, "--table", remembering.unknowns_table,
                     "--endpoint-url", remembering.endpoint])
    assert code == 0
    assert f"forgot cluster {cluster}: 1 face(s) removed" in capsys.readouterr().out
    assert stored_anywhere(remembering, key) == []
    # The tombstone still stops a late redelivery of the recognition from remembering the face again.
    assert recognize.handler({"Records": [redelivered(event["Records"][0], 2)]}, context()) == {"batchItemFailures": []}
    assert face_items(remembering) == []
    assert stored_anywhere(remembering, key) == []


def test_the_sweep_with_a_slow_clock_forgets_a_named_clusters_faces(remembering: MotoResources, faces_dir: Any,
                                                                    slow_clock: None) -> None:
    """`name` forgets the cluster's faces (and the sweep any that joined it meanwhile) without
    ordering them against the recognition's S3 event."""
    cluster, _ = remembered_photo(remembering, faces_dir)
    (key,) = [i["image_key"] for i in face_items(remembering)]
    store = store_of(remembering)
    assert store.mark_named(cluster, "rose", 30)
    assert unknowns.sweep(config=current_config())["expired"] == 1
    assert stored_anywhere(remembering, key) == []
