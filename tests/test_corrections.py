"""Corrections that stay corrected (issue 23): `lambdaface correct`, the records replayed by every
recognition of the same bytes, `corrections` and undo, forgetting; through the real handlers
against moto's server (real HTTP) on ../shared/faces, as tests/test_people_index.py does.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.delivering import delivering
from support.lambda_events import OK
from support.moto import MotoResources, moto_resources
from test_people_index import World, create_index

from handlers import recognize
from lambdaface.cli import main
from shared.aws.unknowns_table import UnknownStore
from shared.config import current_config
from shared.pipeline import unknowns

KIT = "multi/kit_with_rose.jpg"
ENV = {"LAMBDAFACE_REMEMBER_UNKNOWNS": "true"}
PEOPLE = ("kit_harington", "rose_leslie", "obama", "biden")


def create_corrections(aws: MotoResources, template: dict[str, Any]) -> str:
    """The template's CorrectionsTable, created in moto under a unique name."""
    p = template["Resources"]["CorrectionsTable"]["Properties"]
    name = f"corrections-{aws.bucket}"
    aws.dynamodb.create_table(TableName=name, KeySchema=p["KeySchema"], AttributeDefinitions=p["AttributeDefinitions"],
                              BillingMode=p["BillingMode"])
    return name


class Corrections(World):
    """World, plus the corrections table and the commands run in this process."""

    def __init__(self, aws: MotoResources, index: str, table: str) -> None:
        super().__init__(aws, index)
        self.table = table

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "--bucket", self.aws.bucket, "--table", self.table, "--index-table", self.index,
                         "--unknowns-table", self.aws.unknowns_table])
        return code, out.getvalue(), err.getvalue()

    def correct(self, key: str, face: int, *decision: str) -> str:
        code, out, err = self.run("correct", key, "--face", str(face), *decision)
        assert code == 0, err
        return out

    def records(self) -> list[dict[str, Any]]:
        code, out, _ = self.run("corrections", "--json")
        assert code == 0
        return [json.loads(line) for line in out.splitlines()]

    def upload(self, key: str, data: bytes) -> None:
        self.aws.put(key, data)
        self.drain()

    def face_of(self, key: str, person: str) -> int:
        """The number (from 1) of the face named `person` in `key`'s result."""
        faces = self.aws.result(key)["faces"]
        return next(n for n, f in enumerate(faces, start=1) if f["person"] == person)


@pytest.fixture(scope="module")
def world(moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> Iterator[Corrections]:
    """kit_harington, rose_leslie, obama and biden enrolled from their first photo; remembering on."""
    with moto_resources(moto_endpoint, **ENV) as aws:
        w = Corrections(aws, create_index(aws, template), create_corrections(aws, template))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", w.index)
            mp.setenv("CORRECTIONS_TABLE", w.table)
            for person in PEOPLE:
                photo = sorted((faces_dir / "people" / person).iterdir())[0]
                aws.put(f"models/{person}/{photo.name}", photo.read_bytes())
            w.drain()
            yield w


def sources_of(w: World, person: str) -> set[str]:
    return {f["source"] for f in w.find(person)}


def no_rewrite(*args: Any) -> None:
    raise AssertionError("the result was rewritten after the recognition: it did not apply the records itself")


def test_a_not_correction_survives_a_rerun_and_a_new_upload_of_the_same_bytes(world: Corrections, faces_dir: Path) -> None:
    key, copy = f"queries/{KIT}", "queries/elsewhere/same_bytes.jpg"
    data = (faces_dir / KIT).read_bytes()
    world.upload(key, data)
    assert world.aws.result(key)["people"] == ["kit_harington", "rose_leslie"]
    n = world.face_of(key, "kit_harington")
    world.correct(key, n, "--not", "kit_harington")
    doc = world.aws.result(key)
    face = doc["faces"][n - 1]
    assert face["person"] != "kit_harington" and face["corrected"] == ["not kit_harington"]
    assert "kit_harington" not in doc["people"] and "rose_leslie" in doc["people"]
    assert doc["engine_faces"][n - 1]["person"] == "kit_harington"  # the engine's own answer, kept beside it
    assert key not in sources_of(world, "kit_harington") and key in sources_of(world, "rose_leslie")

    with pytest.MonkeyPatch.context() as mp:  # recognition applies the records itself: no rewrite after it
        mp.setattr("shared.pipeline.corrections.reapply", no_rewrite)
        world.upload(key, data)  # a rerun: the same bytes again at the same key, a new S3 event and job
        world.upload(copy, data)  # the same bytes at another key
    rerun = world.aws.result(key)
    assert rerun["job_id"] != doc["job_id"]
    assert rerun["faces"][n - 1]["person"] != "kit_harington" and "kit_harington" not in rerun["people"]
    other = world.aws.result(copy)
    assert "kit_harington" not in other["people"] and "rose_leslie" in other["people"]
    assert any(f.get("corrected") == ["not kit_harington"] for f in other["faces"])
    assert not {key, copy} & sources_of(world, "kit_harington")
    assert {key, copy} <= sources_of(world, "rose_leslie")


def test_the_annotated_copy_follows_a_correction_and_its_undo(world: Corrections, faces_dir: Path) -> None:
    """The picture must not keep a name the result no longer gives: after `correct --not`, the
    annotated copy is drawn again from the corrected faces; after the undo, it is the engine's again."""
    from shared.config import EngineConfig
    from shared.engine.decode import decode_image
    from shared.pipeline import annotated

    key = "queries/annotated/kit_with_rose.jpg"
    data = (faces_dir / KIT).read_bytes()
    world.upload(key, data)
    image = decode_image(data, EngineConfig())

    def picture() -> bytes:
        doc = world.aws.result(key)
        return world.aws.s3.get_object(Bucket=world.aws.bucket, Key=doc["annotated"])["Body"].read()

    before, engine = picture(), world.aws.result(key)
    assert before == annotated.render(image, engine["faces"])  # recognition drew it so
    n = world.face_of(key, "rose_leslie")
    world.correct(key, n, "--not", "rose_leslie")
    doc = world.aws.result(key)
    assert doc["faces"][n - 1]["person"] != "rose_leslie"
    after = picture()
    assert after != before and after == annotated.render(image, doc["faces"])
    (record,) = [r for r in world.records() if r["source"] == key and r.get("person") == "rose_leslie"]
    code, _, err = world.run("corrections", "undo", record["id"])
    assert code == 0, err
    restored = world.aws.result(key)
    assert [(f["box"], f["person"]) for f in restored["faces"]] == [(f["box"], f["person"]) for f in engine["faces"]]
    assert picture() == before


def test_undoing_a_correction_restores_the_engines_answer(world: Corrections, faces_dir: Path) -> None:
    key = "queries/undo/two_people.jpg"
    world.upload(key, (faces_dir / "multi/two_people.jpg").read_bytes())
    engine = world.aws.result(key)
    n = world.face_of(key, "biden")
    world.correct(key, n, "--is", "kit_harington")
    corrected = world.aws.result(key)
    assert corrected["faces"][n - 1]["person"] == "kit_harington" and key in sources_of(world, "kit_harington")
    assert "biden" not in corrected["people"]
    (record,) = [r for r in world.records() if r["source"] == key and r.get("person") == "kit_harington"]
    assert record["decision"] == "is" and "embedding" not in record
    code, out, _ = world.run("corrections", "--person", "kit_harington")
    assert code == 0 and record["id"] in out and "is kit_harington" in out
    code, out, err = world.run("corrections", "undo", record["id"])
    assert code == 0, err
    restored = world.aws.result(key)
    assert restored["faces"] == engine["faces"] and restored["people"] == engine["people"]
    assert "engine_faces" not in restored
    assert key not in sources_of(world, "kit_harington") and key in sources_of(world, "biden")
    assert record["id"] not in {r["id"] for r in world.records()}


def test_not_a_face_removes_it_and_a_repeated_correction_changes_nothing(world: Corrections, faces_dir: Path) -> None:
    key = "queries/notaface/obama_and_biden.jpg"
    world.upload(key, (faces_dir / "multi/obama_and_biden.jpg").read_bytes())
    before = world.aws.result(key)
    n = world.face_of(key, "biden")
    world.correct(key, n, "--not-a-face")
    after = world.aws.result(key)
    assert len(after["faces"]) == len(before["faces"]) - 1 and "biden" not in after["people"]
    assert key not in sources_of(world, "biden")
    obama = world.face_of(key, "obama")  # faces count in the result as it is now
    world.correct(key, obama, "--not", "obama")
    state = (sorted(map(json.dumps, world.aws.scan(world.table))), world.aws.result(key), sorted(map(json.dumps, world.items())))
    world.correct(key, obama, "--not", "obama")  # the same decision again: nothing changes
    assert (sorted(map(json.dumps, world.aws.scan(world.table))), world.aws.result(key),
            sorted(map(json.dumps, world.items()))) == state


@pytest.mark.parametrize("argv, message", [
    (["correct", "queries/no/such.jpg", "--face", "1", "--not", "obama"], "no result for 'queries/no/such.jpg'"),
    (["correct", f"queries/{KIT}", "--face", "3", "--not", "obama"], "has 2 face(s): --face counts from 1 to 2, not 3"),
    (["correct", f"queries/{KIT}", "--face", "0", "--is", "obama"], "not 0"),
    (["correct", f"queries/{KIT}", "--face", "1", "--is", "bad/name"], "cannot contain '/'"),
    (["correct", f"queries/{KIT}", "--face", "1", "--is", ".."], "person"),
    (["correct", f"queries/{KIT}", "--face", "1", "--not-a-face", "--enroll"], "--enroll goes with --is"),
    (["corrections", "undo", "ffffffffffff"], "no correction 'ffffffffffff'"),
])
def test_bad_input_is_one_line_exit_1_and_changes_nothing(world: Corrections, faces_dir: Path, argv: list[str],
                                                          message: str) -> None:
    key = f"queries/{KIT}"
    world.upload(key, (faces_dir / KIT).read_bytes())
    state = (sorted(map(json.dumps, world.aws.scan(world.table))), sorted(map(json.dumps, world.items())),
             world.aws.result(key))
    code, out, err = world.run(*argv)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert (sorted(map(json.dumps, world.aws.scan(world.table))), sorted(map(json.dumps, world.items())),
            world.aws.result(key)) == state


def test_forgetting_a_person_deletes_their_corrections(world: Corrections, faces_dir: Path) -> None:
    key = "queries/forget/two_people.jpg"
    world.upload(key, (faces_dir / "multi/two_people.jpg").read_bytes())
    world.correct(key, world.face_of(key, "obama"), "--not", "obama")
    assert [r for r in world.records() if r.get("person") == "obama"]
    for obj in world.aws.s3.list_objects_v2(Bucket=world.aws.bucket, Prefix="models/obama/").get("Contents", []):
        world.aws.s3.delete_object(Bucket=world.aws.bucket, Key=obj["Key"])
    world.drain()  # the forget job: obama's last face leaves the gallery, and the records naming obama go
    assert [r for r in world.records() if r.get("person") == "obama"] == []
    assert world.records()  # nobody else's


def test_a_correction_made_while_the_source_is_recognized_is_in_its_result(world: Corrections, faces_dir: Path) -> None:
    """The interleaving: the recognition has read the records (none) and is about to write its
    result when the correction is stored (and applied to the previous result); the result then
    written must still come out corrected."""
    key = "queries/race/kit.jpg"
    data = sorted((faces_dir / "people/kit_harington").iterdir())[1].read_bytes()  # bytes no test corrected
    world.upload(key, data)
    n = world.face_of(key, "kit_harington")
    world.aws.put(key, data)  # recognized again: this job is paused after its records were read
    queue = world.queues["recognize"]
    (message,) = queue.receive_all()
    reached, go = threading.Event(), threading.Event()
    from shared.pipeline import images

    real_render = images.annotated.render

    def paused_render(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is worker:  # the recognition, not the correction's redraw
            reached.set()
            assert go.wait(60)
        return real_render(*args, **kwargs)

    outcome: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images.annotated, "render", paused_render)
        worker = threading.Thread(target=lambda: outcome.append(queue.deliver(recognize.handler, [message])))
        worker.start()
        try:
            assert reached.wait(120)
            world.correct(key, n, "--not", "kit_harington")
        finally:
            go.set()
            worker.join()
    assert outcome == [OK]
    doc = world.aws.result(key)
    assert doc["faces"][n - 1]["person"] != "kit_harington" and "kit_harington" not in doc["people"]
    assert key not in sources_of(world, "kit_harington")


def test_an_unknown_face_corrected_as_not_this_cluster_stays_out_after_a_full_regroup(
        moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> None:
    """john (never enrolled) in three photos: one cluster. Face of john1 corrected `not` that
    cluster: it leaves it, and neither a full regroup nor recognizing john1 again puts it back."""
    with moto_resources(moto_endpoint, **ENV) as aws:
        w = Corrections(aws, create_index(aws, template), create_corrections(aws, template))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", w.index)
            mp.setenv("CORRECTIONS_TABLE", w.table)
            for name in ("john0.jpg", "john1.jpg", "john2.jpg"):
                aws.put(f"queries/{name}", (faces_dir / "seed" / name).read_bytes())
            w.drain()
            (cluster,) = {aws.result(f"queries/{n}")["faces"][0]["cluster"] for n in ("john0.jpg", "john1.jpg", "john2.jpg")}
            w.correct("queries/john1.jpg", 1, "--not", cluster)
            own = aws.result("queries/john1.jpg")["faces"][0]["cluster"]
            assert own != cluster
            assert sources_of(w, cluster) == {"queries/john0.jpg", "queries/john2.jpg"}
            assert sources_of(w, own) == {"queries/john1.jpg"}
            store = UnknownStore(aws.unknowns_table, aws.bucket)
            merges = unknowns.regroup(store, replace(current_config().pipeline))  # every cluster, not only new faces
            assert store.resolve(own) != store.resolve(cluster), merges
            w.upload("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())  # recognized again
            again = aws.result("queries/john1.jpg")["faces"][0]
            assert store.resolve(again["cluster"]) != store.resolve(cluster)
            w.upload("queries/copy/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())  # the same bytes elsewhere
            assert store.resolve(aws.result("queries/copy/john1.jpg")["faces"][0]["cluster"]) != store.resolve(cluster)
            unknowns.regroup(store, current_config().pipeline)
            assert {store.resolve(f.cluster) for f in store.faces() if "john1" in f.source} & {store.resolve(cluster)} == set()

            (record,) = w.records()  # undone: the face goes back into the cluster, and its result says so
            assert record["cluster"] == cluster and record["moved_to"] == own
            code, _, err = w.run("corrections", "undo", record["id"])
            assert code == 0, err
            back = aws.result("queries/john1.jpg")
            assert store.resolve(back["faces"][0]["cluster"]) == store.resolve(cluster) and "engine_faces" not in back
            (face,) = [f for f in store.faces() if f.face_id == record["unknown_face"]]
            assert store.resolve(face.cluster) == store.resolve(cluster)


def test_move_person_moves_every_record_naming_them(world: Corrections, faces_dir: Path) -> None:
    """What `lambdaface merge FROM INTO` calls: records naming FROM now name INTO (a rename)."""
    from shared.pipeline import corrections

    world.upload("queries/move/0.jpg", (faces_dir / "people/rose_leslie/rose2.jpg").read_bytes())
    world.upload("queries/move/1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    world.correct("queries/move/0.jpg", 1, "--not", "rose_leslie")
    world.correct("queries/move/1.jpg", 1, "--is", "rose_leslie")
    config = replace(current_config(), pipeline=replace(current_config().pipeline, corrections_table=world.table))
    before = [r for r in world.records() if r.get("person") == "rose_leslie"]
    assert len(before) == 2
    assert corrections.move_person(config, "rose_leslie", "rose") == 2
    assert [r for r in world.records() if r.get("person") == "rose_leslie"] == []
    after = corrections.listing(config, "rose")
    assert sorted((r["source"], r["decision"]) for r in after) == sorted((r["source"], r["decision"]) for r in before)
    assert corrections.listing(config, "rose_leslie") == []  # their copies moved too
    assert corrections.forget_person(config, "rose") == 2 and corrections.listing(config, "rose") == []
    assert not [i for i in world.aws.scan(world.table) if i.get("person") in ("rose", "rose_leslie")]  # nor their copies


def test_is_with_enroll_enrolls_the_faces_crop(world: Corrections, faces_dir: Path) -> None:
    key = "queries/enroll/jim.jpg"
    world.upload(key, (faces_dir / "seed/jim-carrey.jpg").read_bytes())
    assert world.aws.result(key)["faces"][0]["person"] is None
    with enroll_worker(world):
        out = world.correct(key, 1, "--is", "jim_carrey", "--enroll", "--timeout", "120")
    assert "corrected face 1 of queries/enroll/jim.jpg: is jim_carrey" in out
    (model,) = world.aws.s3.list_objects_v2(Bucket=world.aws.bucket, Prefix="models/jim_carrey/")["Contents"]
    assert world.aws.result(model["Key"])["status"] == "succeeded"
    assert world.aws.result(key)["faces"][0]["person"] == "jim_carrey" and key in sources_of(world, "jim_carrey")


@contextlib.contextmanager
def enroll_worker(w: World) -> Iterator[None]:
    """The enroll function, delivering its queue while a command waits for enrollments."""
    from handlers import enroll

    with delivering(w.queues, {"enroll": enroll.handler}, idle_s=0.2):
        yield


def test_a_face_corrected_as_not_person_is_never_named_person(moto_endpoint: str, faces_dir: Path,
                                                               template: dict[str, Any]) -> None:
    """john (never enrolled) in three photos, one cluster; john1's face is `not john_emmons`. Naming
    the cluster john_emmons enrolls only the others' crops, leaves john1's face out of the cluster
    and out of john_emmons's index, and recognizing john1 again does not name it john_emmons."""
    with moto_resources(moto_endpoint, **ENV) as aws:
        w = Corrections(aws, create_index(aws, template), create_corrections(aws, template))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", w.index)
            mp.setenv("CORRECTIONS_TABLE", w.table)
            names = ("john0.jpg", "john1.jpg", "john2.jpg")
            for name in names:
                aws.put(f"queries/{name}", (faces_dir / "seed" / name).read_bytes())
            w.drain()
            (cluster,) = {aws.result(f"queries/{n}")["faces"][0]["cluster"] for n in names}
            w.correct("queries/john1.jpg", 1, "--not", "john_emmons")
            with enroll_worker(w), contextlib.redirect_stdout(io.StringIO()):
                assert main(["name", cluster, "john_emmons", "--bucket", aws.bucket, "--table", aws.unknowns_table,
                             "--index-table", w.index, "--corrections-table", w.table, "--timeout", "120"]) == 0
            enrolled = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="models/john_emmons/")["Contents"]]
            assert len(enrolled) == 2
            assert sources_of(w, "john_emmons") == {"queries/john0.jpg", "queries/john2.jpg"}
            own = aws.result("queries/john1.jpg")["faces"][0]
            assert own["person"] is None and own["cluster"] != cluster
            w.upload("queries/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())  # recognized again
            again = aws.result("queries/john1.jpg")["faces"][0]
            assert again["person"] is None and again["candidates"][0]["person"] == "john_emmons"
            assert "not john_emmons" in again["corrected"]
            assert "queries/john1.jpg" not in sources_of(w, "john_emmons")


def test_a_correction_never_writes_back_a_result_a_new_upload_replaced(world: Corrections, faces_dir: Path) -> None:
    """The other interleaving: `correct` has read the result and is about to write it corrected
    when a new upload at the same key is recognized; the newer result must stay (the correction's
    write is conditional on the result it read, and it reads again)."""
    from shared.pipeline import corrections

    key = "queries/race/replaced.jpg"
    world.upload(key, sorted((faces_dir / "people/kit_harington").iterdir())[2].read_bytes())
    reached, go = threading.Event(), threading.Event()
    real_for_etag = corrections.for_etag
    command = threading.current_thread()

    def paused_for_etag(*args: Any) -> Any:
        found = real_for_etag(*args)
        if threading.current_thread() is not command and not reached.is_set():
            reached.set()  # the command read the result and its records: its write comes next
            assert go.wait(60)
        return found

    outcome: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corrections, "for_etag", paused_for_etag)
        worker = threading.Thread(target=lambda: outcome.append(world.correct(key, 1, "--not", "kit_harington")))
        worker.start()
        try:
            assert reached.wait(60)
            world.upload(key, (faces_dir / "people/biden/biden.jpg").read_bytes())  # replaced and recognized meanwhile
        finally:
            go.set()
            worker.join()
    assert outcome
    doc = world.aws.result(key)
    assert doc["source_etag"] == world.aws.etag(key) and doc["people"] == ["biden"]
    assert key in sources_of(world, "biden") and key not in sources_of(world, "kit_harington")
