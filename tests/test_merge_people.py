"""`lambdaface merge` and `rename`, through the real handlers against moto's server (real HTTP) on
../shared/faces: obama enrolled under two names (`barack`, `obama`), photos recognized, then merged;
a rename, an interrupted rename finished by running it again, bad input, and two races held at the
dangerous step (a recognition naming FROM, a new upload under models/FROM/, both while the merge runs).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from support.delivering import delivering
from support.moto import moto_resources
from support.waits import wait_until
from test_corrections import create_corrections
from test_people_index import World, create_index

from handlers import enroll, recognize
from lambdaface import merge as merge_command
from lambdaface.cli import main
from shared.aws.gallery_table import GalleryTable
from shared.config import current_config
from shared.pipeline import corrections, people_index, person_merge

ENROLLED = {  # key under models/ -> photo of ../shared/faces
    "barack/obama.jpg": "people/obama/obama.jpg",
    "barack/obama2.jpg": "people/obama/obama2.jpg",
    "obama/obama.jpg": "people/obama/obama4.jpg",  # the same file name as one of barack's: must not be overwritten
    "biden/biden.jpg": "people/biden/biden.jpg",
    "kit/kit1.jpg": "people/kit_harington/kit1.jpg",
    "kit_harington/kit2.jpg": "people/kit_harington/kit2.jpg",
    "rose_leslie/rose1.jpg": "people/rose_leslie/rose1.jpg",
    "alex/alex1.jpg": "people/alex_lacamoire/alex1.jpg",
    "lin/lin1.png": "people/lin_manuel_miranda/lin1.png",
}
QUERIES = ["people/obama/obama3.jpg", "people/obama/obama_small.jpg", "people/obama/obama_240p.jpg",
           "multi/two_people.jpg", "multi/obama_and_biden.jpg", "hard/obama_partial_face.jpg", "hard/32bit.png",
           "people/biden/biden2.jpg", "people/kit_harington/kit3.jpg", "multi/kit_with_rose.jpg"]


@pytest.fixture(scope="module")
def world(moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> Iterator[World]:
    with moto_resources(moto_endpoint) as aws:
        index = create_index(aws, template)
        w = World(aws, index)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", index)
            mp.setenv("CORRECTIONS_TABLE", create_corrections(aws, template))
            for key, photo in ENROLLED.items():
                aws.put(f"models/{key}", (faces_dir / photo).read_bytes())
            w.drain()
            for photo in QUERIES:
                aws.put(f"queries/{photo}", (faces_dir / photo).read_bytes())
            w.drain()
            yield w


@contextlib.contextmanager
def workers(world: World) -> Iterator[None]:
    """The enroll and recognize functions, running while a command waits for their results."""
    with delivering(world.queues, {"enroll": enroll.handler, "recognize": recognize.handler}) as failures:
        yield
    assert not failures


def run(world: World, *argv: str) -> tuple[int, str, str]:
    """`lambdaface ARGV --bucket ... --index-table ...` with the functions running: (exit, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with workers(world), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--bucket", world.aws.bucket, "--index-table", world.index, "--timeout", "120",
                     "--interval", "0.2"])
    return code, out.getvalue(), err.getvalue()


def images(world: World, person: str) -> dict[str, bytes]:
    """File name -> bytes of every image under models/PERSON/."""
    s3, bucket = world.aws.s3, world.aws.bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"models/{person}/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def has_faces(person: str) -> bool:
    return GalleryTable(current_config().pipeline.gallery_table).has_faces(person)


def recognized_on(world: World, person: str) -> set[str]:
    return {f"queries/{q}" for q in QUERIES if person in (world.aws.result(f"queries/{q}").get("people") or [])}


def after_first_move(mp: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> list[int]:
    """Run `meanwhile` once, as soon as the merge has moved FROM's records the first time (its
    images are copied and enrolled, not yet deleted): the dangerous step."""
    original, calls = person_merge.move_records, []

    def held(config: Any, from_name: str, into: str) -> int:
        moved = original(config, from_name, into)
        calls.append(moved)
        if len(calls) == 1:
            meanwhile()
        return moved

    mp.setattr(person_merge, "move_records", held)
    return calls


def test_merge_moves_images_faces_and_appearances(world: World, faces_dir: Path) -> None:
    barack = recognized_on(world, "barack")
    assert barack, "barack (two photos of obama) is recognized on some photos"
    assert {f["source"] for f in world.find("barack")} == barack
    own = images(world, "obama")["obama.jpg"]
    corrected = "queries/people/obama/obama3.jpg"  # a correction naming barack moves with him
    corrections.correct(current_config(), world.aws.bucket, corrected, 1, "is", "barack")
    appears = {f["source"] for f in world.find("barack")}
    assert appears == barack | {corrected}  # the correction names him there, whoever was recognized

    code, out, err = run(world, "merge", "barack", "obama", "--rerun")
    assert code == 0, err
    assert "merged barack into obama: 2 image(s) copied" in out
    assert images(world, "barack") == {} and not has_faces("barack")
    moved = images(world, "obama")
    assert moved["obama.jpg"] == own  # obama's own image of that name kept; barack's beside it
    assert moved["obama-barack.jpg"] == (faces_dir / "people/obama/obama.jpg").read_bytes()
    assert moved["obama2.jpg"] == (faces_dir / "people/obama/obama2.jpg").read_bytes()
    assert world.find("barack") == []
    found = world.find("obama")
    assert barack <= {f["source"] for f in found} and all(f["person"] == "obama" for f in found)

    assert f"re-recognizing {len(appears)} source(s):" in out, out  # --rerun: their results name obama now
    assert recognized_on(world, "obama") >= appears and not recognized_on(world, "barack")
    assert world.find("barack") == []
    assert corrections.listing(current_config(), "barack") == []
    [record] = corrections.listing(current_config(), "obama")
    assert (record["source"], record["decision"], record["person"]) == (corrected, "is", "obama")


def test_rename_interrupted_then_run_again_finishes(world: World, mp: pytest.MonkeyPatch) -> None:
    biden = recognized_on(world, "biden")
    assert biden

    def interrupt() -> None:
        raise KeyboardInterrupt  # Ctrl-C once the copies are enrolled, before anything is deleted

    after_first_move(mp, interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(world, "rename", "biden", "joe_biden")
    assert set(images(world, "joe_biden")) == {"biden.jpg"} and set(images(world, "biden")) == {"biden.jpg"}
    mp.undo()

    code, out, err = run(world, "rename", "biden", "joe_biden")  # NEW has images now: the copies, so not refused
    assert code == 0, err
    assert "renamed biden into joe_biden: 1 image(s) copied" in out
    assert images(world, "biden") == {} and not has_faces("biden") and has_faces("joe_biden")
    assert world.find("biden") == []
    assert {f["source"] for f in world.find("joe_biden")} == biden
    assert people_index.merge_mark(current_config().pipeline, "biden") is None


@pytest.fixture
def mp() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_recognition_naming_from_during_the_merge_ends_under_into(world: World, mp: pytest.MonkeyPatch) -> None:
    """A recognition that loaded the gallery before the merge finishes between the move of FROM's
    entries and the forget of FROM's last face: its entry must reach INTO, not be deleted."""
    late = "queries/late-kit.jpg"
    document = {"job_id": "late-job", "kind": "recognize", "status": "succeeded", "source": late,
                "finished_at": "2026-12-04T18:00:00.000Z",
                "faces": [{"box": {"left": 1, "top": 2, "width": 30, "height": 30}, "person": "kit", "distance": 0.3}]}
    after_first_move(mp, lambda: people_index.record(current_config(), document))

    code, _, err = run(world, "merge", "kit", "kit_harington")
    assert code == 0, err
    assert world.find("kit") == []
    assert late in {f["source"] for f in world.find("kit_harington")}


def test_an_upload_under_from_during_the_merge_is_moved_too(world: World, faces_dir: Path,
                                                             mp: pytest.MonkeyPatch) -> None:
    rose2 = (faces_dir / "people/rose_leslie/rose2.jpg").read_bytes()
    after_first_move(mp, lambda: world.aws.put("models/rose_leslie/rose2.jpg", rose2))

    code, out, err = run(world, "rename", "rose_leslie", "rose")
    assert code == 0, err
    assert images(world, "rose_leslie") == {} and not has_faces("rose_leslie")
    assert images(world, "rose")["rose2.jpg"] == rose2 and set(images(world, "rose")) == {"rose1.jpg", "rose2.jpg"}
    assert "2 image(s) copied" in out


def test_an_image_replaced_under_from_during_the_merge_is_not_lost(world: World, faces_dir: Path,
                                                                   mp: pytest.MonkeyPatch) -> None:
    """FROM's image is copied, then replaced by other bytes before the merge deletes it: the new
    bytes must not be deleted uncopied (a second round copies them, beside the first copy)."""
    alex1, alex2 = ((faces_dir / f"people/alex_lacamoire/{n}").read_bytes() for n in ("alex1.jpg", "alex2.jpg"))
    after_first_move(mp, lambda: world.aws.put("models/alex/alex1.jpg", alex2))

    code, _, err = run(world, "rename", "alex", "lacamoire")
    assert code == 0, err
    assert images(world, "alex") == {} and not has_faces("alex")
    assert images(world, "lacamoire") == {"alex1.jpg": alex1, "alex1-alex.jpg": alex2}


def test_a_forget_of_from_before_anything_is_copied_deletes_its_entries(world: World,
                                                                        mp: pytest.MonkeyPatch) -> None:
    """`forget FROM` wins the race when FROM's images are deleted (and forgotten) before the merge
    copies any: FROM's entries are deleted, as for any forget, not handed to INTO."""
    seen = "queries/seen-lin.jpg"
    document = {"job_id": "lin-job", "kind": "recognize", "status": "succeeded", "source": seen,
                "finished_at": "2026-12-04T18:00:00.000Z",
                "faces": [{"box": {"left": 1, "top": 2, "width": 30, "height": 30}, "person": "lin", "distance": 0.3}]}
    people_index.record(current_config(), document)
    assert {f["source"] for f in world.find("lin")} == {seen}
    original, held = merge_command.copy_image, []

    def forget_first(s3: Any, bucket: str, key: str, from_name: str, into: str, arm: Any) -> Any:
        if not held:  # the merge listed FROM's images; a forget deletes them before the first copy
            held.append(key)
            s3.delete_object(Bucket=bucket, Key=key)
            wait_until("the forget's result", lambda: (world.aws.maybe_result(key) or {}).get("kind") == "forget")
        return original(s3, bucket, key, from_name, into, arm)

    mp.setattr(merge_command, "copy_image", forget_first)
    code, out, err = run(world, "merge", "lin", "lin_manuel")
    assert held == ["models/lin/lin1.png"]
    assert code == 0, err
    assert "0 image(s) copied" in out and images(world, "lin_manuel") == {}
    assert world.find("lin") == [] and world.find("lin_manuel") == []


@pytest.mark.parametrize("argv, message", [
    (["merge", "nobody", "obama"], "no images under models/nobody/: nobody is not enrolled"),
    (["merge", "obama", "obama"], "cannot merge obama into itself"),
    (["merge", "obama", "bad/name"], "'bad/name' is not a valid person name"),
    (["merge", "bad..name", "obama"], "'bad..name' is not a valid person name"),
    (["rename", "obama", ""], "'' is not a valid person name"),
    (["merge", "u-0a1b2c3d4e5f6071", "obama"], "u-0a1b2c3d4e5f6071 is an unknown cluster, not a person"),
    (["rename", "kit_harington", "obama"], "obama already has images under models/obama/: `lambdaface merge"),
])
def test_bad_input_one_line_exit_1_nothing_changed(world: World, argv: list[str], message: str) -> None:
    before = world.aws.s3.list_objects_v2(Bucket=world.aws.bucket).get("Contents", [])
    index_before = world.items()
    code, out, err = run(world, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("lambdaface: ") and message in err, err
    assert world.aws.s3.list_objects_v2(Bucket=world.aws.bucket).get("Contents", []) == before
    assert world.items() == index_before


def test_a_merge_mark_left_by_an_abandoned_merge_expires(world: World) -> None:
    """A merge never run again stops redirecting the forget of FROM's entries after MERGE_MARK_S,
    and another merge of FROM may then begin; until then, a merge into someone else is refused."""
    p, start = current_config().pipeline, 1_000_000
    assert people_index.begin_merge(p, "ghost", "obama", now=start)
    assert people_index.merging_into(p, "ghost", now=start) is None  # not armed: a forget still deletes
    assert people_index.begin_merge(p, "ghost", "obama", armed=True, now=start)
    assert people_index.merging_into(p, "ghost", now=start + people_index.MERGE_MARK_S - 1) == "obama"
    assert people_index.merging_into(p, "ghost", now=start + people_index.MERGE_MARK_S) is None
    assert not people_index.begin_merge(p, "ghost", "biden", now=start + 1)
    assert people_index.begin_merge(p, "ghost", "biden", now=start + people_index.MERGE_MARK_S)
    people_index.end_merge(p, "ghost")
    assert people_index.merge_mark(p, "ghost", now=start) is None
