"""End to end on one machine: `lambdaface local` in a subprocess, uploads with the AWS CLI and with
boto3, results through the watcher and the client commands, the real handlers and dlib models.
The tests share one stack and run in order; the last one restarts it from its saved state."""
from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from local_support import ROOT, LocalStack, aws_env, lambdaface

from lambdaface import watch


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("e2e") / "state", workers=1) as s:
        yield s
    assert s.stop() == 0


def _wait(stack: LocalStack, *sources: str) -> dict[str, dict[str, Any]]:
    """The results of the current uploads of `sources`, through the watcher."""
    s3 = stack.client("s3")
    expectations = [watch.current_expectation(s3, stack.bucket, source) for source in sources]
    found = watch.wait_for(s3, stack.bucket, expectations, timeout=180)
    assert all(found.values()), found
    return found  # type: ignore[return-value]


def test_seed_example_with_the_aws_cli_and_the_watcher(stack: LocalStack, faces_dir: Path, tmp_path: Path) -> None:
    seed = faces_dir / "seed"
    aws = str(Path(sys.executable).with_name("aws"))
    copy = subprocess.run(
        [aws, "--endpoint-url", stack.endpoint, "s3", "cp", str(seed / "john0.jpg"), f"s3://{stack.bucket}/models/john/john0.jpg"],
        env=aws_env(stack.endpoint), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    watched = lambdaface("watch", "--job", "models/john/john0.jpg", "--timeout", "180", endpoint=stack.endpoint)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert watched.stdout.startswith("models/john/john0.jpg  enroll succeeded  john  ")

    out = tmp_path / "annotated"
    recognized = lambdaface(
        "recognize", "--person", "john", "--out", str(out),
        str(seed / "john1.jpg"), str(seed / "john2.jpg"), str(seed / "jim-carrey.jpg"),
        endpoint=stack.endpoint,
    )
    assert recognized.returncode == 0, recognized.stdout + recognized.stderr
    lines = recognized.stdout.splitlines()
    assert "john1.jpg: Faces match: True" in lines
    assert "john2.jpg: Faces match: True" in lines
    assert "jim-carrey.jpg: Faces match: False" in lines
    for name in ("john1.jpg", "john2.jpg", "jim-carrey.jpg"):
        assert (out / f"{name}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
        assert f"annotated: {out / (name + '.jpg')}" in lines

    single = lambdaface("recognize", "--person", "john", str(seed / "john1.jpg"), endpoint=stack.endpoint)
    assert single.stdout.splitlines()[-1] == "Faces match: True"


def _follow(stack: LocalStack) -> tuple[subprocess.Popen, "queue.Queue[str]"]:
    """`lambdaface watch` (no --job) in the background; its stdout lines land in a queue."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdaface.cli", "watch", "--interval", "0.2"],
        cwd=ROOT, env=aws_env(stack.endpoint), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in process.stdout], daemon=True).start()
    return process, lines


def test_a_photo_with_two_enrolled_people(stack: LocalStack, faces_dir: Path) -> None:
    s3 = stack.client("s3")
    follower, followed = _follow(stack)
    try:
        for person, image in (("obama", "people/obama/obama.jpg"), ("biden", "people/biden/biden.jpg")):
            s3.upload_file(str(faces_dir / image), stack.bucket, f"models/{person}/{Path(image).name}")
        enrolled = _wait(stack, "models/obama/obama.jpg", "models/biden/biden.jpg")
        assert {doc["status"] for doc in enrolled.values()} == {"succeeded"}

        s3.upload_file(str(faces_dir / "multi/two_people.jpg"), stack.bucket, "queries/two_people.jpg")
        doc = _wait(stack, "queries/two_people.jpg")["queries/two_people.jpg"]
        assert doc["status"] == "succeeded"
        assert doc["people"] == ["biden", "obama"]
        assert sorted(f["person"] for f in doc["faces"]) == ["biden", "obama"]
        assert all(f["distance"] < 0.6 for f in doc["faces"])

        # the follower printed a line per new result, the group photo's among them
        seen = []
        while not any(line.startswith("queries/two_people.jpg  recognize succeeded  biden, obama  ") for line in seen):
            seen.append(followed.get(timeout=120))
    finally:
        follower.terminate()
        follower.wait(30)
    assert any(line.startswith("models/obama/obama.jpg  enroll succeeded  obama  ") for line in seen), seen


def test_people_forget_and_recognize_again(stack: LocalStack, faces_dir: Path) -> None:
    _wait(stack, "models/biden/biden.jpg", "models/obama/obama.jpg")  # enrolled by the test above
    people = lambdaface("people", "--json", endpoint=stack.endpoint)
    rows = {row["person"]: row for row in map(json.loads, people.stdout.splitlines())}
    assert rows["biden"] == {"person": "biden", "images": 1, "enrolled": 1, "failed": 0, "pending": 0}

    forgot = lambdaface("forget", "biden", endpoint=stack.endpoint)
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    assert "forgot biden: 1 face(s) removed from the gallery, 1 image(s) deleted" in forgot.stdout
    people = lambdaface("people", "--json", endpoint=stack.endpoint)
    assert "biden" not in {json.loads(line)["person"] for line in people.stdout.splitlines()}

    again = lambdaface("recognize", "--json", str(faces_dir / "multi/two_people.jpg"), endpoint=stack.endpoint)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["people"] == ["obama"]
    assert sorted(str(f["person"]) for f in doc["faces"]) == ["None", "obama"]


def test_a_failed_job_fails_the_watch(stack: LocalStack, faces_dir: Path) -> None:
    stack.client("s3").upload_file(str(faces_dir / "multi/kit_with_rose.jpg"), stack.bucket, "models/crowd/kit_with_rose.jpg")
    watched = subprocess.run(  # the watcher script, as well as `lambdaface watch`
        [sys.executable, "watcher/watch.py", "--job", f"s3://{stack.bucket}/models/crowd/kit_with_rose.jpg"],
        cwd=ROOT, env=aws_env(stack.endpoint), capture_output=True, text=True, timeout=300,
    )
    assert watched.returncode == watch.EXIT_FAILED
    assert watched.stdout.startswith("models/crowd/kit_with_rose.jpg  enroll failed MULTIPLE_FACES  crowd  ")
    enrolled = lambdaface("enroll", "crowd", str(faces_dir / "multi/kit_with_rose.jpg"), endpoint=stack.endpoint)
    assert enrolled.returncode == watch.EXIT_FAILED
    assert "enroll failed MULTIPLE_FACES" in enrolled.stdout


def test_the_stack_printed_a_line_per_job(stack: LocalStack) -> None:
    stack.wait_for_line(r"^EnrollFunction models/john/john0.jpg: succeeded \(\d+\.\d s\)$", timeout=60)
    stack.wait_for_line(r"^RecognizeFunction queries/two_people.jpg: succeeded \(", timeout=60)
    stack.wait_for_line(r"^EnrollFunction models/biden/biden.jpg: removed \(", timeout=60)
    stack.wait_for_line(r"^EnrollFunction models/crowd/kit_with_rose.jpg: failed MULTIPLE_FACES \(", timeout=60)


def test_a_clean_restart_keeps_the_gallery(stack: LocalStack, faces_dir: Path) -> None:
    assert stack.stop(signal.SIGTERM) == 0
    with LocalStack(stack.state_dir, workers=1) as again:
        people = lambdaface("people", endpoint=again.endpoint)
        assert re.search(r"^john\s+1\s+1\s+0\s+0$", people.stdout, re.M), people.stdout
        assert re.search(r"^obama\s+1\s+1\s+0\s+0$", people.stdout, re.M), people.stdout
        recognized = lambdaface("recognize", "--person", "john", str(faces_dir / "seed/john2.jpg"), endpoint=again.endpoint)
        assert recognized.stdout.splitlines()[-1] == "Faces match: True", recognized.stdout + recognized.stderr
        assert again.stop(signal.SIGINT) == 0
