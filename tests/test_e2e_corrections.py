"""Corrections that stay corrected (issue 23), end to end as a user runs them: `lambdaface local`
(the table made from template.yaml, the functions told its name), then `enroll`, `recognize`,
`correct`, `recognize` again, `corrections`, `undo` and `forget` as processes, on ../shared/faces."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from support.cli import lambdaface
from support.stack import StackClients, StackProcess, stack_fixture

CORRECTIONS_TABLE = "lambdaface-CorrectionsTable"
stack = stack_fixture("corrections", workers=1)


def run(*args: str, stack: StackProcess, ok: bool = True) -> str:
    done = lambdaface(*args, stack=stack)
    assert (done.returncode == 0) == ok, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def records(stack: StackProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run("corrections", "--json", stack=stack).splitlines() if line.startswith("{")]


def test_correct_rerun_copy_undo_and_forget_on_the_local_stack(stack: StackProcess, faces_dir: Path, tmp_path: Path) -> None:
    aws = StackClients(stack)
    run("enroll", "kit_harington", str(faces_dir / "people/kit_harington/kit1.jpg"), stack=stack)
    run("enroll", "rose_leslie", str(faces_dir / "people/rose_leslie/rose1.jpg"), stack=stack)
    photo = faces_dir / "multi/kit_with_rose.jpg"
    run("recognize", str(photo), stack=stack)
    key = "queries/kit_with_rose.jpg"
    engine = aws.result(key)
    n = next(i for i, f in enumerate(engine["faces"], start=1) if f["person"] == "kit_harington")

    out = run("correct", key, "--face", str(n), "--not", "kit_harington", stack=stack)
    assert f"corrected face {n} of {key}: not kit_harington" in out
    assert aws.result(key)["people"] == ["rose_leslie"]
    assert key not in run("find", "kit_harington", stack=stack)

    run("recognize", str(photo), stack=stack)  # a rerun: the same bytes, a new job
    copy = tmp_path / "same_bytes.jpg"
    shutil.copyfile(photo, copy)
    run("recognize", str(copy), stack=stack)  # a new upload of the same bytes at another key
    for source in (key, "queries/same_bytes.jpg"):
        doc = aws.result(source)
        assert doc["people"] == ["rose_leslie"], source
        assert any(f.get("corrected") == ["not kit_harington"] for f in doc["faces"]), source
    assert aws.result(key)["job_id"] != engine["job_id"]
    assert "kit_with_rose" not in run("find", "kit_harington", stack=stack)

    (record,) = records(stack)
    assert record["decision"] == "not" and record["person"] == "kit_harington" and "embedding" not in record
    assert {i["pk"][:2] for i in aws.scan(CORRECTIONS_TABLE)} == {"e#", "n#"}  # the record and its copy
    run("corrections", "undo", record["id"], stack=stack)
    assert aws.result(key)["faces"] == engine["faces"]  # the engine's own answer
    assert key in run("find", "kit_harington", stack=stack)
    assert records(stack) == []

    run("correct", key, "--face", str(n), "--not", "kit_harington", stack=stack)
    assert len(records(stack)) == 1
    run("forget", "kit_harington", stack=stack)  # forgetting a person deletes the records naming them
    assert records(stack) == [] and aws.scan(CORRECTIONS_TABLE) == []

    bad = lambdaface("correct", key, "--face", "7", "--not", "rose_leslie", stack=stack)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "--face counts from 1 to 2" in bad.stderr
