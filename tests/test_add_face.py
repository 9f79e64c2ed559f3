"""`lambdaface add-face` (issue 23): a face the detector missed, added by its box, recognized as its
person, kept as a correction record (`added`) and so by every recognition of the same bytes (at
any key), listed and undone with `lambdaface corrections`.

Real photos, the real handlers against moto's server (real HTTP), S3 notifications routed as the
template routes them (test_people_index.World). rose_leslie and kit_harington are enrolled from
rose1.jpg and kit1.jpg. `multi/kit_with_rose.jpg` is recognized as it is: the detector's box of
rose's face is taken from its result. A copy of it is pasted into a canvas three times its size:
the detector works on a copy at most 960 pixels a side, where both faces are a third as large and
are missed, while `add-face` embeds the face at full resolution.
"""
from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image
from support.images import encode
from support.lambda_events import OK
from support.moto import moto_resources
from test_corrections import create_corrections
from test_people_index import World, create_index

from lambdaface.cli import main
from shared.config import EngineConfig
from shared.engine.decode import decode_image
from shared.engine.faces import Box, detect_faces, embed_at, find_faces
from shared.pipeline.keys import result_key

ORIGINAL, COPY = "queries/kit_with_rose.jpg", "queries/padded/kit_with_rose.jpg"
FACTOR = 3  # the copy's canvas, in sizes of the photo (the photo at its centre)


def cli(*argv: str) -> tuple[int, str, str]:
    """`lambdaface ARGV` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def padded(faces_dir: Path, quality: int = 95) -> tuple[bytes, tuple[int, int]]:
    """kit_with_rose.jpg in the middle of a grey canvas FACTOR times its size; the photo's offset.
    (An added face is kept for its bytes: a test that must start without one takes its own `quality`.)"""
    photo = Image.open(faces_dir / "multi/kit_with_rose.jpg").convert("RGB")
    canvas = Image.new("RGB", (photo.width * FACTOR, photo.height * FACTOR), (128, 128, 128))
    offset = (photo.width, photo.height)
    canvas.paste(photo, offset)
    return encode(canvas, "JPEG", quality=quality), offset


class Added(World):
    """World, plus the corrections table where added faces are kept (add-face's default: $CORRECTIONS_TABLE)."""

    def __init__(self, aws: Any, index: str, corrections: str) -> None:
        super().__init__(aws, index)
        self.corrections = corrections

    def records(self) -> list[dict[str, Any]]:
        """The stored records (not their `n#<person>` copies)."""
        return [r for r in self.aws.scan(self.corrections) if r["pk"].startswith("e#")]


@pytest.fixture(scope="module")
def world(moto_endpoint: str, faces_dir: Path, template: dict[str, Any]) -> Iterator[Added]:
    with moto_resources(moto_endpoint) as aws:
        index = create_index(aws, template)
        w = Added(aws, index, create_corrections(aws, template))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PEOPLE_INDEX_TABLE", index)
            mp.setenv("CORRECTIONS_TABLE", w.corrections)
            aws.put("models/rose_leslie/rose1.jpg", (faces_dir / "people/rose_leslie/rose1.jpg").read_bytes())
            aws.put("models/kit_harington/kit1.jpg", (faces_dir / "people/kit_harington/kit1.jpg").read_bytes())
            aws.put(ORIGINAL, (faces_dir / "multi/kit_with_rose.jpg").read_bytes())
            w.drain()
            yield w


def face_of(doc: dict[str, Any], person: str) -> dict[str, Any]:
    (face,) = [f for f in doc["faces"] if f["person"] == person]
    return face


def shifted(box: dict[str, int], offset: tuple[int, int]) -> str:
    return f"{box['left'] + offset[0]},{box['top'] + offset[1]},{box['width']},{box['height']}"


def rerun(world: Added, key: str) -> None:
    """Recognize `key` again: copied onto itself (the same bytes, a new S3 event), as `name --rerun` does."""
    s3 = world.aws.s3
    before = world.aws.result(key)["job_id"]
    s3.copy_object(Bucket=world.aws.bucket, Key=key, CopySource={"Bucket": world.aws.bucket, "Key": key},
                   MetadataDirective="REPLACE", Metadata={"lambdaface-rerun": "1"})
    world.drain()
    assert world.aws.result(key)["job_id"] != before


def add_rose(world: Added, faces_dir: Path, key: str, quality: int) -> bytes:
    """Upload `padded` at KEY, recognized (rose is missed there), then `add-face` her box from the
    original's result; the bytes uploaded."""
    data, offset = padded(faces_dir, quality=quality)
    world.aws.put(key, data)
    world.drain()
    rose = face_of(world.aws.result(ORIGINAL), "rose_leslie")
    assert cli("add-face", key, "--box", shifted(rose["box"], offset), "--index-table", world.index)[0] == 0
    return data


def index_photos(world: Added, person: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for f in world.find(person):
        found.setdefault(f["source"], []).append(f)
    return found


def test_the_detector_misses_both_faces_in_the_copy(world: Added, faces_dir: Path) -> None:
    data, _ = padded(faces_dir)
    cfg = EngineConfig()
    assert len(find_faces(decode_image((faces_dir / "multi/kit_with_rose.jpg").read_bytes(), cfg), cfg)) == 2
    assert detect_faces(decode_image(data, cfg), cfg) == []  # HOG, as the recognize function runs it
    assert detect_faces(decode_image(data, cfg), cfg.with_overrides(detector="cnn")) == []  # and the CNN


def test_a_face_added_by_its_box_is_recognized_as_its_person(world: Added, faces_dir: Path) -> None:
    original = world.aws.result(ORIGINAL)
    rose = face_of(original, "rose_leslie")  # the detector's box on the original
    data, offset = padded(faces_dir)
    world.aws.put(COPY, data)
    world.drain()
    assert world.aws.result(COPY)["faces"] == []  # the pipeline missed it too
    code, out, err = cli("add-face", COPY, "--box", shifted(rose["box"], offset), "--index-table", world.index)
    assert code == 0, err
    assert f"{COPY}: face 1 added, matched rose_leslie" in out
    doc = world.aws.result(COPY)
    (face,) = doc["faces"]
    assert face["person"] == "rose_leslie" and face["added"] is True and "named" not in face
    assert face["distance"] <= EngineConfig().threshold
    assert abs(face["distance"] - rose["distance"]) < 0.1  # the same face as the detector's, at its box
    assert face["candidates"][0]["person"] == "rose_leslie"
    assert doc["people"] == ["rose_leslie"]
    assert [f["box"] for f in index_photos(world, "rose_leslie")[COPY]] == [face["box"]]
    annotated = Image.open(io.BytesIO(world.aws.s3.get_object(Bucket=world.aws.bucket, Key=doc["annotated"])["Body"].read()))
    left, top = face["box"]["left"], face["box"]["top"]
    assert np.asarray(annotated.convert("RGB"))[top + 2, left + 2].tolist() != [128, 128, 128]  # its box is drawn


def test_named_with_is_and_kept_by_a_rerun_and_a_new_upload_of_the_same_bytes(world: Added, faces_dir: Path) -> None:
    original = world.aws.result(ORIGINAL)
    kit = face_of(original, "kit_harington")
    data, offset = padded(faces_dir)
    if world.aws.maybe_result(COPY) is None:  # run alone: the copy, and rose's face, first
        world.aws.put(COPY, data)
        world.drain()
    if not world.aws.result(COPY)["faces"]:
        rose = face_of(original, "rose_leslie")
        assert cli("add-face", COPY, "--box", shifted(rose["box"], offset), "--index-table", world.index)[0] == 0
    code, out, err = cli("add-face", COPY, "--box", shifted(kit["box"], offset), "--is", "kit_harington", "--json",
                         "--index-table", world.index)
    assert code == 0, err
    added = json.loads(out)
    assert added["person"] == "kit_harington" and added["named"] is True and added["added"] is True and added["face"] == 2
    before = world.aws.result(COPY)
    assert before["people"] == ["kit_harington", "rose_leslie"]

    def kept(doc: dict[str, Any]) -> None:
        faces = sorted(doc["faces"], key=lambda f: f["box"]["left"])
        assert [(f["person"], f.get("added"), f.get("named")) for f in faces] == [
            ("rose_leslie", True, None), ("kit_harington", True, True)]
        assert [f["box"] for f in faces] == sorted([f["box"] for f in before["faces"]], key=lambda b: b["left"])
        assert doc["people"] == ["kit_harington", "rose_leslie"]
        assert COPY in index_photos(world, "rose_leslie") and COPY in index_photos(world, "kit_harington")

    rerun(world, COPY)  # the same bytes: a new job
    kept(world.aws.result(COPY))
    world.aws.put(COPY, data)  # a new upload of the same bytes
    world.drain()
    kept(world.aws.result(COPY))
    # Other bytes (the same picture encoded again): the boxes were added to the old ones, not kept.
    world.aws.put(COPY, encode(Image.open(io.BytesIO(data)), "JPEG", quality=90))
    world.drain()
    assert world.aws.result(COPY)["faces"] == []
    assert COPY not in index_photos(world, "rose_leslie") and COPY not in index_photos(world, "kit_harington")
    world.aws.put(COPY, data)  # the same bytes back: their added faces with them (records of their content)
    world.drain()
    kept(world.aws.result(COPY))


@pytest.mark.parametrize("argv, message", [
    (["queries/nothing-here.jpg", "--box", "10,10,50,50"], "no result for 'queries/nothing-here.jpg'"),
    (["models/rose_leslie/rose1.jpg", "--box", "10,10,50,50"], "is not a recognized source"),
    ([ORIGINAL, "--box", "450,10,80,80"], "is not inside the 501x700 image"),
    ([ORIGINAL, "--box", "10,650,80,80"], "is not inside the 501x700 image"),
    ([ORIGINAL, "--box", "10,10,80"], "is not a box"),
    ([ORIGINAL, "--box", "10,10,eighty,80"], "is not a box"),
    ([ORIGINAL, "--box", "10,10,8,8"], "at least 20x20 are needed"),
    ([ORIGINAL, "--box", "10,10,80,80", "--is", "rose/leslie"], "must be 1-64 letters"),
    ([ORIGINAL, "--box", "10,10,80,80", "--is", "x" * 65], "must be 1-64 letters"),
    ([ORIGINAL, "--box", "88,135,70,70"], "is face 1 of 'queries/kit_with_rose.jpg' already"),
])
def test_bad_input_is_one_line_exit_1_and_changes_nothing(world: Added, argv: list[str], message: str) -> None:
    result = world.aws.s3.get_object(Bucket=world.aws.bucket, Key=result_key(ORIGINAL))["Body"].read()
    items = sorted(map(json.dumps, world.items())) + sorted(json.dumps(r, default=str) for r in world.aws.scan(world.corrections))
    listing = sorted(o["Key"] + o["ETag"] for o in world.aws.s3.list_objects_v2(Bucket=world.aws.bucket)["Contents"])
    code, out, err = cli("add-face", *argv, "--index-table", world.index)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("lambdaface: ") and message in err, err
    assert world.aws.s3.get_object(Bucket=world.aws.bucket, Key=result_key(ORIGINAL))["Body"].read() == result
    assert sorted(map(json.dumps, world.items())) + sorted(json.dumps(r, default=str) for r in world.aws.scan(world.corrections)) == items
    assert sorted(o["Key"] + o["ETag"] for o in world.aws.s3.list_objects_v2(Bucket=world.aws.bucket)["Contents"]) == listing


def test_embed_at_the_detectors_box_gives_the_detectors_descriptor(photos: Any) -> None:
    """The engine step alone: landmarks on the given rectangle, then the usual chip and descriptor."""
    cfg = EngineConfig()
    image = photos.image("multi/kit_with_rose.jpg")
    for face in photos.faces("multi/kit_with_rose.jpg"):
        again = embed_at(image, face.box, cfg)
        assert again.box == face.box
        assert float(np.linalg.norm(again.embedding - face.embedding)) < 0.02
    with pytest.raises(Exception, match="BAD_BOX"):
        embed_at(image, Box(-1, 0, 50, 50), cfg)


def test_a_recognition_that_finishes_while_a_face_is_added_wins(world: Added, faces_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving: add-face has read the result and the photo; before it writes, new bytes are
    uploaded at the key and their recognition finishes. add-face must not write its stale result
    over the new one (nor its index entries): it fails, one line, and the new result stands."""
    from shared.pipeline import added_faces

    key = "queries/race/kit_with_rose.jpg"
    data, offset = padded(faces_dir, quality=94)
    world.aws.put(key, data)
    world.drain()
    assert world.aws.result(key)["faces"] == []
    rose = face_of(world.aws.result(ORIGINAL), "rose_leslie")
    embed = added_faces.embed_at

    def rival_first(*args: Any, **kwargs: Any) -> Any:  # runs between add-face's reads and its write
        world.aws.put(key, (faces_dir / "multi/kit_with_rose.jpg").read_bytes())
        world.drain()
        return embed(*args, **kwargs)

    monkeypatch.setattr(added_faces, "embed_at", rival_first)
    code, out, err = cli("add-face", key, "--box", shifted(rose["box"], offset), "--index-table", world.index)
    assert code == 1 and "added" not in out and err.count("\n") == 1  # (out: the rival job's metrics line)
    assert "changed while the face was being added; nothing was added" in err
    new = world.aws.result(key)
    assert sorted(f["person"] for f in new["faces"]) == ["kit_harington", "rose_leslie"]
    assert not any(f.get("added") for f in new["faces"])
    assert [f["box"] for f in index_photos(world, "rose_leslie")[key]] == [face_of(new, "rose_leslie")["box"]]
    assert not [r for r in world.records() if r["source"] == key]  # the record it stored went with it


def test_an_added_face_stores_no_embedding(world: Added, faces_dir: Path) -> None:
    """An added face is its box (and name) in the result and the index: no descriptor is written anywhere."""
    key = "queries/stored/kit_with_rose.jpg"
    add_rose(world, faces_dir, key, quality=93)
    rerun(world, key)
    doc = world.aws.result(key)
    assert [f["person"] for f in doc["faces"]] == ["rose_leslie"] and doc["faces"][0]["added"] is True
    assert set(doc["faces"][0]) == {"box", "person", "distance", "candidates", "added"}

    def numbers(value: Any) -> int:  # the longest list of numbers anywhere in `value`
        if isinstance(value, dict):
            return max([numbers(v) for v in value.values()] + [0])
        if isinstance(value, list):
            flat = len(value) if value and all(isinstance(v, (int, float)) for v in value) else 0
            return max([flat] + [numbers(v) for v in value])
        return 0

    assert numbers(doc) < 16 and "embedding" not in json.dumps(doc)
    (record,) = [r for r in world.records() if r["source"] == key]
    assert record["decision"] == "added" and record["box"] == doc["faces"][0]["box"] and "person" not in record
    for item in world.items() + world.aws.scan(world.corrections):
        assert numbers(item) < 16 and "embedding" not in json.dumps(item, default=str) and "vector" not in item


def test_an_added_face_the_detector_finds_later_is_not_there_twice(world: Added, faces_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Recognized again with the detector on the full-size copy (LAMBDAFACE_DETECT_MAX_SIDE), both faces
    are found: the added one is the detector's face now, not a second one at the same place."""
    key = "queries/later/kit_with_rose.jpg"
    add_rose(world, faces_dir, key, quality=92)
    monkeypatch.setenv("LAMBDAFACE_DETECT_MAX_SIDE", "3000")
    rerun(world, key)
    doc = world.aws.result(key)
    assert sorted(f["person"] for f in doc["faces"]) == ["kit_harington", "rose_leslie"]
    assert not any(f.get("added") for f in doc["faces"])
    assert len(index_photos(world, "rose_leslie")[key]) == 1


def test_a_missing_gallery_table_is_one_line(world: Added) -> None:
    code, out, err = cli("add-face", ORIGINAL, "--box", "10,10,80,80", "--gallery-table", "no-such-table",
                         "--index-table", world.index)
    assert code == 1 and out == "" and err.count("\n") == 1 and "pass --gallery-table" in err, err


def test_an_added_face_is_kept_by_a_new_upload_of_the_same_bytes_at_another_key(world: Added, faces_dir: Path) -> None:
    """The added face is a record of the photo's content (its ETag), not of the key: the same bytes
    uploaded elsewhere come out with it, matched again, and in the person index there too."""
    first, second = "queries/bytes/first.jpg", "queries/bytes/elsewhere/second.jpg"
    data = add_rose(world, faces_dir, first, quality=89)
    world.aws.put(second, data)
    world.drain()
    doc = world.aws.result(second)
    (face,) = doc["faces"]
    assert face["person"] == "rose_leslie" and face["added"] is True
    assert face["box"] == world.aws.result(first)["faces"][0]["box"] and doc["people"] == ["rose_leslie"]
    assert {first, second} <= set(index_photos(world, "rose_leslie"))


def test_an_added_face_is_listed_and_undone_with_corrections(world: Added, faces_dir: Path) -> None:
    """`lambdaface corrections` lists the added face's record; `corrections undo ID` removes the face
    from the result, the index and the annotated copy, and a new recognition of the bytes has it no more."""
    from shared.config import EngineConfig
    from shared.pipeline import annotated

    key = "queries/undo/kit_with_rose.jpg"
    data, offset = padded(faces_dir, quality=88)
    world.aws.put(key, data)
    world.drain()
    plain = world.aws.s3.get_object(Bucket=world.aws.bucket, Key=world.aws.result(key)["annotated"])["Body"].read()
    rose = face_of(world.aws.result(ORIGINAL), "rose_leslie")
    assert cli("add-face", key, "--box", shifted(rose["box"], offset), "--index-table", world.index)[0] == 0
    table = ("--table", world.corrections, "--index-table", world.index)
    code, out, err = cli("corrections", "--json", *table)
    assert code == 0, err
    (record,) = [r for r in map(json.loads, out.splitlines()) if r["source"] == key]
    assert record["decision"] == "added" and "person" not in record
    code, out, _ = cli("corrections", *table)
    assert f"{record['id']}  " in out and f"{key}  box " in out and out.split(record["id"])[1].splitlines()[0].endswith("  added")
    code, out, err = cli("corrections", "undo", record["id"], *table)
    assert code == 0, err
    doc = world.aws.result(key)
    assert doc["faces"] == [] and doc["people"] == [] and "engine_faces" not in doc
    assert key not in index_photos(world, "rose_leslie")
    picture = world.aws.s3.get_object(Bucket=world.aws.bucket, Key=doc["annotated"])["Body"].read()
    assert picture == plain == annotated.render(decode_image(data, EngineConfig()), [])
    rerun(world, key)
    assert world.aws.result(key)["faces"] == []


def test_forgetting_the_person_deletes_a_named_added_face(world: Added, faces_dir: Path) -> None:
    """An added face named PERSON is a record naming PERSON: forgetting them (their last enrolled
    image deleted) deletes it, with their other records, and the next recognition has it no more.
    (Last in this module: biden is enrolled for it.)"""
    key = "queries/forget/kit_with_rose.jpg"
    data, offset = padded(faces_dir, quality=87)
    world.aws.put("models/biden/biden.jpg", (faces_dir / "people/biden/biden.jpg").read_bytes())
    world.aws.put(key, data)
    world.drain()
    kit = face_of(world.aws.result(ORIGINAL), "kit_harington")
    assert cli("add-face", key, "--box", shifted(kit["box"], offset), "--is", "biden", "--index-table", world.index)[0] == 0
    assert [f["person"] for f in world.aws.result(key)["faces"]] == ["biden"]
    (record,) = [r for r in world.records() if r["source"] == key]
    assert record["person"] == "biden"
    assert [c for c in world.aws.scan(world.corrections) if c["pk"] == "n#biden"]  # its copy: forgetting is a Query
    code, out, _ = cli("corrections", "--person", "biden", "--table", world.corrections, "--index-table", world.index)
    assert code == 0 and record["id"] in out and out.rstrip().endswith("added, is biden")
    world.aws.s3.delete_object(Bucket=world.aws.bucket, Key="models/biden/biden.jpg")
    world.drain()
    assert not [r for r in world.aws.scan(world.corrections) if r.get("person") == "biden"]
    rerun(world, key)
    assert world.aws.result(key)["faces"] == []


def test_a_face_added_while_the_same_bytes_are_recognized_is_in_the_result(world: Added, faces_dir: Path) -> None:
    """The interleaving: a recognition of the same bytes has read the records (none) and is about to
    draw and write its result when add-face stores its record and rewrites the previous result. The
    result the recognition then writes must still have the added face (its settle reads the records
    again and adds it), and so must the index."""
    from handlers import recognize
    from shared.pipeline import images

    key = "queries/meanwhile/kit_with_rose.jpg"
    data, offset = padded(faces_dir, quality=86)
    world.aws.put(key, data)
    world.drain()
    world.aws.put(key, data)  # recognized again: this job is paused before it draws and writes its result
    queue = world.queues["recognize"]
    (message,) = queue.receive_all()
    reached, go = threading.Event(), threading.Event()
    real_render = images.annotated.render

    def paused_render(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is worker:  # the recognition, not add-face's redraw
            reached.set()
            assert go.wait(60)
        return real_render(*args, **kwargs)

    rose = face_of(world.aws.result(ORIGINAL), "rose_leslie")
    outcome: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(images.annotated, "render", paused_render)
        worker = threading.Thread(target=lambda: outcome.append(queue.deliver(recognize.handler, [message])))
        worker.start()
        try:
            assert reached.wait(120)
            code, _, err = cli("add-face", key, "--box", shifted(rose["box"], offset), "--index-table", world.index)
            assert code == 0, err
        finally:
            go.set()
            worker.join()
    assert outcome == [OK]
    doc = world.aws.result(key)
    assert [(f["person"], f.get("added")) for f in doc["faces"]] == [("rose_leslie", True)] and doc["people"] == ["rose_leslie"]
    assert [f["box"] for f in index_photos(world, "rose_leslie")[key]] == [doc["faces"][0]["box"]]
