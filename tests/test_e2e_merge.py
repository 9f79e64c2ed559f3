"""`lambdaface merge` end to end: `lambdaface local` in a subprocess with the real handlers and models,
the commands as a user runs them. john is enrolled twice, as `johnny` (john0.jpg) and `john`
(john1.jpg); john2.jpg is recognized; `merge johnny john` leaves johnny nothing, and john is found
where johnny was."""
from __future__ import annotations

import json
from pathlib import Path

from support.cli import lambdaface
from support.stack import StackProcess, stack_fixture

stack = stack_fixture("merge", workers=1)


def run(stack: StackProcess, *args: str) -> str:
    done = lambdaface(*args, stack=stack)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def find(stack: StackProcess, person: str) -> set[str]:
    return {a["source"] for a in json.loads(run(stack, "find", person, "--json"))["appearances"]}


def test_merge_on_the_local_stack(stack: StackProcess, faces_dir: Path) -> None:
    seed = faces_dir / "seed"
    run(stack, "enroll", "johnny", str(seed / "john0.jpg"))
    run(stack, "enroll", "john", str(seed / "john1.jpg"))
    names = json.loads(run(stack, "recognize", "--json", str(seed / "john2.jpg")).strip().splitlines()[-1])["people"]
    assert names and set(names) <= {"john", "johnny"}
    before = find(stack, "johnny") | find(stack, "john")
    assert before == {"queries/john2.jpg"}

    out = run(stack, "merge", "johnny", "john")
    assert "merged johnny into john: 1 image(s) copied to models/john/, 1 deleted from models/johnny/" in out
    people = {row["person"]: row for row in map(json.loads, run(stack, "people", "--json").splitlines())}
    assert "johnny" not in people and people["john"]["images"] == 2 and people["john"]["enrolled"] == 2
    assert find(stack, "johnny") == set() and find(stack, "john") == before

    again = lambdaface("merge", "johnny", "john", stack=stack)
    assert again.returncode == 1 and again.stderr.strip() == (
        "lambdaface: no images under models/johnny/: johnny is not enrolled")
    doc = json.loads(run(stack, "recognize", "--json", str(seed / "john2.jpg")).strip().splitlines()[-1])
    assert doc["people"] == ["john"]
