"""The person index and `lambdaface find`, through the real handlers against moto's server (real
HTTP) on ../shared/faces: each person of people/ enrolled from one photo, every other photo and the
video recognized; then forget, name, re-recognition, redelivery and a regroup's merge.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.delivering import delivering
from support.lambda_events import OK, LambdaQueue
from support.moto import MotoResources, moto_resources

from handlers import enroll, recognize, video
from lambdaface.cli import main
from shared.aws.unknowns_table import UnknownStore
from shared.config import current_config
from shared.pipeline import people_index, unknowns
from shared.pipeline.video_copy import drop_local_copy

CLIP = "video/short_hamilton_clip.mp4"
# The clip at 2 frames a second (the video default, CNN, detector), in 3-second segments.
ENV = {"LAMBDAFACE_SEGMENT_S": "3", "LAMBDAFACE_SAMPLE_FPS": "2",
       "LAMBDAFACE_REMEMBER_UNKNOWNS": "true"}


def create_index(aws: MotoResources, template: dict[str, Any]) -> str:
    """The template's PeopleIndexTable, created in moto under a unique name."""
    p = template["Resources"]["PeopleIndexTable"]["Properties"]
    name = f"people-{aws.bucket}"
    aws.dynamodb.create_table(TableName=name, KeySchema=p["KeySchema"], AttributeDefinitions=p["AttributeDefinitions"],
                              BillingMode=p["BillingMode"])
    return name


class World:
    """Resources with S3 notifications routed as template.yaml routes them, queues delivered to the handlers."""

    def __init__(self, aws: MotoResources, index: str) -> None:
        self.aws, self.index = aws, index
        self.queues = {name: LambdaQueue.create(aws.sqs, f"{aws.bucket}-{name}", VisibilityTimeout="600")
                       for name in ("enroll", "recognize", "video")}
        rules = [{"QueueArn": self.queues[name].arn, "Events": events,
                  "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}
                 for name, events, prefix in (("enroll", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "models/"),
                                              ("recognize", ["s3:ObjectCreated:*"], "queries/"))]
        aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket,
                                                      NotificationConfiguration={"QueueConfigurations": rules})

    def drain(self) -> None:
        """Deliver every queue until all are empty (a video's plan brings its segments)."""
        handlers = {"enroll": enroll.handler, "recognize": recognize.handler, "video": video.handler}
        while True:
            ran = False
            for name, queue in self.queues.items():
                while messages := queue.receive():
                    assert queue.deliver(handlers[name], messages) == OK
                    ran = True
            if not ran:
                return

    def find(self, name: str, *extra: str, limit: int = 4) -> list[dict[str, Any]]:
        """Every appearance `lambdaface find NAME --json` lists, page by page (`limit` a page)."""
        found, token = [], None
        while True:
            args = ["find", name, "--json", "--table", self.index, "--limit", str(limit), *extra]
            page = self.cli_json(args + (["--next", token] if token else []))
            found += page["appearances"]
            token = page["next"]
            if not token:
                return found

    def cli_json(self, argv: list[str]) -> Any:
        out = self.cli(argv)
        return json.loads(out.strip().splitlines()[-1])

    def cli(self, argv: list[str]) -> str:
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(argv) == 0
        return buffer.getvalue()

    def items(self) -> list[dict[str, Any]]:
        return self.aws.scan(self.index)


@pytest.fixture(scope="module")
def labels_by_person(faces_dir: Path) -> dict[str, set[str]]:
    with open(faces_dir / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, set[str]] = {}
    for row in rows:
        for person in row["people"].split(";"):
            out.setdefault(person, set()).add(row["path"])
    return out


def enrolled_photo(faces_dir: Path, person: str) -> str:
    return sorted(p.name for p in (faces_dir / "people" / person).iterdir())[0]


@pytest.fixture(scope="module")
def world(moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> Iterator[World]:
    """Each person of people/ enrolled from their first photo; every other photo and the clip recognized."""
    with moto_resources(moto_endpoint, **ENV) as aws:
        index = create_index(aws, template)
        w = World(aws, index)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", index)
            mp.setenv("VIDEO_QUEUE_URL", w.queues["video"].url)
            drop_local_copy()
            for person in sorted(p.name for p in (faces_dir / "people").iterdir()):
                photo = enrolled_photo(faces_dir, person)
                aws.put(f"models/{person}/{photo}", (faces_dir / "people" / person / photo).read_bytes())
            w.drain()
            enrolled = {f"people/{d.name}/{enrolled_photo(faces_dir, d.name)}" for d in (faces_dir / "people").iterdir()}
            with open(faces_dir / "labels.csv", newline="") as f:
                for row in csv.DictReader(f):
                    if row["path"] not in enrolled:
                        aws.put(f"queries/{row['path']}", (faces_dir / row["path"]).read_bytes())
            w.drain()
            yield w


def photos_of(found: list[dict[str, Any]]) -> set[str]:
    return {f["source"].removeprefix("queries/") for f in found if f["media"] == "photo"}


def test_find_lists_exactly_the_labelled_photos_and_the_videos_intervals(world: World, faces_dir: Path,
                                                                          labels_by_person: dict[str, set[str]]) -> None:
    clip = world.aws.result(f"queries/{CLIP}")
    assert clip["status"] == "succeeded"
    on_screen = {a["person"]: a for a in clip["appearances"] if a.get("person")}
    assert "lin_manuel_miranda" in on_screen  # labels.csv: in the clip (and in no other photo but the enrolled one)
    for person in sorted(p.name for p in (faces_dir / "people").iterdir()):
        found = world.find(person)
        expected = {path for path in labels_by_person[person] if not path.startswith("video/")}  # every labelled photo
        expected.discard(f"people/{person}/{enrolled_photo(faces_dir, person)}")
        assert photos_of(found) == expected, person
        assert len([f for f in found if f["media"] == "photo"]) == len(expected), person  # one entry per appearance
        for f in found:
            if f["media"] == "photo":
                doc = world.aws.result(f["source"])
                assert f["result"] == f"results/{f['source']}.json"
                assert any(face["box"] == f["box"] and face["distance"] == f["distance"] and face["person"] == person
                           for face in doc["faces"]), (person, f)
        videos = [f for f in found if f["media"] == "video"]
        if person in on_screen:
            (v,) = videos
            assert v["source"] == f"queries/{CLIP}"
            assert v["intervals"] == on_screen[person]["intervals"] and v["seconds"] == on_screen[person]["seconds"]
        else:
            assert videos == [], person
        times = [f["at"] for f in found]
        assert times == sorted(times, reverse=True), person  # newest first
    text = world.cli(["find", "obama", "--table", world.index, "--limit", "2"])
    assert "photo  queries/" in text and "more: lambdaface find obama --next " in text
    assert world.find("obama", "--since", "2999-01-01") == []
    assert len(world.find("obama", "--since", "1h")) == len(world.find("obama"))


def test_the_index_holds_no_embeddings(world: World) -> None:
    for item in world.items():
        assert "embedding" not in item and "vector" not in item
        assert len(json.dumps(item, default=str)) < 4000
        assert item["expires_at"] > 0


def test_a_redelivery_writes_nothing_twice(world: World, faces_dir: Path) -> None:
    key = "queries/again/kit_with_rose.jpg"
    world.aws.put(key, (faces_dir / "multi/kit_with_rose.jpg").read_bytes())
    queue = world.queues["recognize"]
    (message,) = queue.receive_all()
    assert queue.deliver(recognize.handler, [message]) == OK
    before = sorted(map(json.dumps, world.items()))
    assert queue.deliver(recognize.handler, [message], receive_count=2) == OK  # the same message again
    doc = world.aws.result(key)
    # The job ran again after a crash between its index write and its record: a new finished_at, the same job.
    assert people_index.record(current_config(), {**doc, "finished_at": "2999-01-01T00:00:00.000Z"}) == 0
    assert sorted(map(json.dumps, world.items())) == before
    assert {f["source"] for f in world.find("kit_harington")} >= {key}
    assert [f["source"] for f in world.find("rose_leslie")].count(key) == 1


def test_recognizing_a_source_again_replaces_its_entries(world: World, faces_dir: Path) -> None:
    key = "queries/swap.jpg"
    world.aws.put(key, (faces_dir / "people/obama/obama2.jpg").read_bytes())
    world.drain()
    assert "swap.jpg" in photos_of(world.find("obama"))
    world.aws.put(key, (faces_dir / "people/biden/biden2.jpg").read_bytes())  # a new upload, the same key
    world.drain()
    assert "swap.jpg" not in photos_of(world.find("obama"))
    assert [f["source"] for f in world.find("biden")].count(key) == 1
    assert len([i for i in world.items() if i.get("source") == key and "media" in i]) == 1


def test_a_source_whose_new_job_fails_on_its_last_delivery_loses_its_entries(world: World, faces_dir: Path) -> None:
    """The failed result (RETRIES_EXHAUSTED) replaces the previous one, and so does the index."""
    key = "queries/lost.jpg"
    world.aws.put(key, (faces_dir / "people/obama/obama2.jpg").read_bytes())
    world.drain()
    assert "lost.jpg" in photos_of(world.find("obama"))
    world.aws.put(key, (faces_dir / "people/obama/obama3.jpg").read_bytes())
    queue = world.queues["recognize"]
    (message,) = queue.receive_all()
    with pytest.MonkeyPatch.context() as mp:  # a failure worth retrying, on every delivery (injected)
        mp.setattr("shared.pipeline.images.find_faces", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("injected")))
        response = queue.deliver(recognize.handler, [message], receive_count=5)  # the last delivery
    assert response["batchItemFailures"]  # to the DLQ
    assert world.aws.result(key)["error"]["code"] == "RETRIES_EXHAUSTED"
    assert "lost.jpg" not in photos_of(world.find("obama"))
    assert not [i for i in world.items() if i.get("source") == key]


def test_naming_a_remembered_cluster_moves_its_entries_to_the_person(world: World) -> None:
    john = {f"queries/seed/{n}" for n in ("john0.jpg", "john1.jpg", "john2.jpg")}
    clusters = {face["cluster"] for key in john for face in world.aws.result(key)["faces"]}
    (cluster,) = clusters
    assert {f["source"] for f in world.find(cluster)} == john
    with delivering(world.queues, {"enroll": enroll.handler}, idle_s=0.2):  # the enroll function, while `name` waits
        world.cli(["name", cluster, "john_emmons", "--bucket", world.aws.bucket, "--table", world.aws.unknowns_table,
                   "--index-table", world.index, "--timeout", "120", "--faces", "2"])
    found = world.find("john_emmons")
    assert {f["source"] for f in found} == john and all(f["person"] == "john_emmons" for f in found)
    assert world.aws.scan(world.index) and not [i for i in world.items() if i["pk"] == f"c#{cluster}"]
    assert world.cli_json(["find", cluster, "--json", "--table", world.index])["goes_by"] == "john_emmons"
    assert world.find(cluster) == found  # the old id still finds them: under the name it was given


def test_after_forget_obama_find_obama_is_empty(world: World) -> None:
    assert world.find("obama")
    world.aws.s3.delete_object(Bucket=world.aws.bucket, Key="models/obama/obama.jpg")
    world.drain()  # the forget job: obama's last face leaves the gallery, and their entries the index
    assert world.find("obama") == []
    assert world.find("biden")  # nobody else's


def test_a_regroup_that_merges_clusters_moves_their_entries(moto_endpoint: str, faces_dir: Path,
                                                            template: dict[str, Any]) -> None:
    """A strict threshold when remembering puts john's three photos in separate clusters; a regroup
    at the usual threshold merges them, and the index follows."""
    with moto_resources(moto_endpoint, **ENV, LAMBDAFACE_UNKNOWN_THRESHOLD="0.05") as aws:
        index = create_index(aws, template)
        w = World(aws, index)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", index)
            for name in ("john0.jpg", "john1.jpg", "john2.jpg"):
                aws.put(f"queries/{name}", (faces_dir / "seed" / name).read_bytes())
            w.drain()
            before = {f"queries/{n}": aws.result(f"queries/{n}")["faces"][0]["cluster"]
                      for n in ("john0.jpg", "john1.jpg", "john2.jpg")}
            assert len(set(before.values())) == 3
            p = replace(current_config().pipeline, unknown_threshold=0.55)
            merges = unknowns.regroup(UnknownStore(aws.unknowns_table, aws.bucket), p)
            assert merges
            (survivor,) = set(merges.values()) | (set(before.values()) - set(merges))
            found = w.find(survivor)
            assert {f["source"] for f in found} == set(before) and all(f["cluster"] == survivor for f in found)
            for retired in merges:
                assert not [i for i in w.items() if i["pk"] == f"c#{retired}"]
                assert w.find(retired) == found  # an id in an old result still finds them: under the survivor's


def test_find_refuses_a_bad_since_or_token(capsys: pytest.CaptureFixture[str]) -> None:
    from lambdaface.find import since_key

    assert main(["find", "obama", "--since", "last tuesday"]) == 2
    assert main(["find", "obama", "--next", "not-a-token"]) == 2
    err = capsys.readouterr().err
    assert "--since 'last tuesday'" in err and "--next 'not-a-token'" in err
    assert since_key("2026-12-01") == "2026-12-01T00:00:00.000Z"
    assert since_key("2026-12-01T10:00:00Z") == since_key("2026-12-01T11:00:00+01:00") == "2026-12-01T10:00:00.000Z"
    assert since_key("2h", now=7200.0) == "1970-01-01T00:00:00.000Z"
