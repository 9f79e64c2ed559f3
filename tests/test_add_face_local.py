"""`add-face` and `review` as a user runs them against `lambdaface local` (issue 23): the commands in
subprocesses, with their defaults for the local stack's tables; the stack's recognize function
keeps the added face when the same bytes are uploaded again.

The threshold is 0.49 and the review band 0.06 here (chosen from the measured distances of
../shared/faces, enrolled without jitters so that they are the same on every run: rose's face in
kit_with_rose.jpg is 0.448 from rose1.jpg, 0.460 when added by its box in the copy; kit's 0.33),
passed to the stack's functions through its environment.
"""
from __future__ import annotations

import json
from pathlib import Path

from support.cli import lambdaface
from support.stack import StackProcess, stack_fixture
from test_add_face import face_of, padded, shifted

THRESHOLD, BAND = 0.49, 0.06
stack = stack_fixture("addface", workers=1, env={"LAMBDAFACE_THRESHOLD": str(THRESHOLD),
                                                  "LAMBDAFACE_REVIEW_BAND": str(BAND), "LAMBDAFACE_ENROLL_JITTERS": "1"})


def run(stack: StackProcess, *argv: str) -> str:
    done = lambdaface(*argv, stack=stack)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_add_face_and_review_through_the_local_stack(stack: StackProcess, faces_dir: Path, tmp_path: Path) -> None:
    run(stack, "enroll", "rose_leslie", str(faces_dir / "people/rose_leslie/rose1.jpg"))
    run(stack, "enroll", "kit_harington", str(faces_dir / "people/kit_harington/kit1.jpg"))
    run(stack, "recognize", str(faces_dir / "multi/kit_with_rose.jpg"))
    original = stack.result("queries/kit_with_rose.jpg")
    assert original["model"]["threshold"] == THRESHOLD
    data, offset = padded(faces_dir)
    copy = tmp_path / "padded.jpg"
    copy.write_bytes(data)
    run(stack, "recognize", str(copy))
    assert stack.result("queries/padded.jpg")["faces"] == []

    rose = face_of(original, "rose_leslie")
    out = run(stack, "add-face", "queries/padded.jpg", "--box", shifted(rose["box"], offset))
    assert "queries/padded.jpg: face 1 added, matched rose_leslie" in out and "in the review band" in out
    found = json.loads(run(stack, "find", "rose_leslie", "--json"))["appearances"]
    assert sorted(f["source"] for f in found) == ["queries/kit_with_rose.jpg", "queries/padded.jpg"]

    run(stack, "recognize", str(copy))  # the same bytes again: a new job keeps the added face
    again = stack.result("queries/padded.jpg")
    (face,) = again["faces"]
    assert face["added"] is True and face["person"] == "rose_leslie"

    listed = json.loads(run(stack, "review", "--json"))["faces"]
    want = {(source, n) for source, doc in (("queries/kit_with_rose.jpg", original), ("queries/padded.jpg", again))
            for n, f in enumerate(doc["faces"], start=1) if abs(f["distance"] - THRESHOLD) <= BAND}
    assert want == {("queries/kit_with_rose.jpg", 1), ("queries/padded.jpg", 1)}  # rose, twice
    assert {(f["source"], f["face"]) for f in listed} == want
    text = run(stack, "review")
    assert "lambdaface correct queries/kit_with_rose.jpg --face 1 --is rose_leslie" in text
    assert face_of(original, "kit_harington")["distance"] < THRESHOLD - BAND  # kit: named, not in the band
