"""End to end on one machine: `lambdaface local` in a subprocess, uploads with the AWS CLI and with
boto3, results through the watcher and the client commands, the real handlers and dlib models,
on IPv4 and on IPv6 loopback (`--host ::1`).

The tests share one stack but not their state: each enrolls the people it needs (a re-upload is a
new job for the same person), and none relies on another having run. The restart test has a stack
of its own, which it stops and starts again from the saved state."""
from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from support import ROOT
from support.cli import lambdaface
from support.stack import StackClients, StackProcess, stack_fixture
from support.waits import wait_until

from lambdaface import client, watch

stack = stack_fixture("e2e", workers=1, hosts=("127.0.0.1", "::1"))  # IPv4 and IPv6 loopback


def upload_and_wait(stack: StackProcess, uploads: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Upload files to keys as the client does, and wait for the results of these uploads (not
    those of earlier uploads to the same keys, by another test)."""
    s3 = stack.client("s3")
    sent = [client.upload(s3, stack.bucket, path, key, "enroll" if key.startswith("models/") else "recognize")
            for key, path in uploads.items()]
    found = watch.wait_for(s3, stack.bucket, sent, timeout=180)
    missing = [source for source, doc in found.items() if doc is None]
    assert not missing, f"no result for {missing}; stack stderr:\n{stack.stderr()[-3000:]}"
    return {source: doc for source, doc in found.items() if doc is not None}


def enroll_obama_and_biden(stack: StackProcess, faces_dir: Path) -> dict[str, dict[str, Any]]:
    """obama.jpg and biden.jpg uploaded under models/ (again, if another test did): their results."""
    return upload_and_wait(stack, {"models/obama/obama.jpg": faces_dir / "people/obama/obama.jpg",
                                   "models/biden/biden.jpg": faces_dir / "people/biden/biden.jpg"})


def test_seed_example_with_the_aws_cli_and_the_watcher(stack: StackProcess, faces_dir: Path, tmp_path: Path) -> None:
    seed = faces_dir / "seed"
    aws = str(Path(sys.executable).with_name("aws"))
    copy = subprocess.run(
        [aws, "--endpoint-url", stack.endpoint, "s3", "cp", str(seed / "john0.jpg"), f"s3://{stack.bucket}/models/john/john0.jpg"],
        env=stack.client_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert copy.returncode == 0, copy.stderr
    watched = lambdaface("watch", "--job", "models/john/john0.jpg", "--timeout", "180", stack=stack)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert watched.stdout.startswith("models/john/john0.jpg  enroll succeeded  john  ")
    stack.wait_for_line(r"^EnrollFunction models/john/john0.jpg: succeeded \(\d+\.\d s\)$", timeout=60)

    out = tmp_path / "annotated"
    recognized = lambdaface(
        "recognize", "--person", "john", "--out", str(out),
        str(seed / "john1.jpg"), str(seed / "john2.jpg"), str(seed / "jim-carrey.jpg"),
        stack=stack,
    )
    assert recognized.returncode == 0, recognized.stdout + recognized.stderr
    lines = recognized.stdout.splitlines()
    assert "john1.jpg: Faces match: True" in lines
    assert "john2.jpg: Faces match: True" in lines
    assert "jim-carrey.jpg: Faces match: False" in lines
    for name in ("john1.jpg", "john2.jpg", "jim-carrey.jpg"):
        assert (out / f"{name}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
        assert f"annotated: {out / (name + '.jpg')}" in lines

    single = lambdaface("recognize", "--person", "john", str(seed / "john1.jpg"), stack=stack)
    assert single.stdout.splitlines()[-1] == "Faces match: True"


def _follow(stack: StackProcess) -> tuple[subprocess.Popen, "queue.Queue[str]"]:
    """`lambdaface watch` (no --job) in the background, its stdout lines landing in a queue; once
    it follows: it prints a line for each result written after it started, so a result document
    is written (again) until it prints one about it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lambdaface.cli", "watch", "--interval", "0.2"],
        cwd=ROOT, env=stack.client_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in process.stdout], daemon=True).start()
    s3 = stack.client("s3")

    def follows() -> bool:
        doc = {"source": "queries/follower.jpg", "kind": "recognize", "status": "succeeded", "job_id": uuid.uuid4().hex}
        s3.put_object(Bucket=stack.bucket, Key="results/queries/follower.jpg.json", Body=json.dumps(doc).encode())
        try:
            return lines.get(timeout=1).startswith("queries/follower.jpg  recognize succeeded")
        except queue.Empty:
            return False

    wait_until("`lambdaface watch` to follow the results", follows, timeout=120, every=0)
    return process, lines


def test_a_photo_with_two_enrolled_people(stack: StackProcess, faces_dir: Path) -> None:
    follower, followed = _follow(stack)
    try:
        enrolled = enroll_obama_and_biden(stack, faces_dir)
        assert {doc["status"] for doc in enrolled.values()} == {"succeeded"}

        doc = upload_and_wait(stack, {"queries/two_people.jpg": faces_dir / "multi/two_people.jpg"})["queries/two_people.jpg"]
        assert doc["status"] == "succeeded"
        assert doc["people"] == ["biden", "obama"]
        assert sorted(f["person"] for f in doc["faces"]) == ["biden", "obama"]
        assert all(f["distance"] < 0.6 for f in doc["faces"])
        stack.wait_for_line(r"^RecognizeFunction queries/two_people.jpg: succeeded \(", timeout=60)

        # the follower printed a line per new result, the group photo's among them
        seen = []
        while not any(line.startswith("queries/two_people.jpg  recognize succeeded  biden, obama  ") for line in seen):
            seen.append(followed.get(timeout=120))
    finally:
        follower.terminate()
        follower.wait(30)
    assert any(line.startswith("models/obama/obama.jpg  enroll succeeded  obama  ") for line in seen), seen


def test_people_forget_and_recognize_again(stack: StackProcess, faces_dir: Path) -> None:
    enroll_obama_and_biden(stack, faces_dir)
    people = lambdaface("people", "--json", stack=stack)
    rows = {row["person"]: row for row in map(json.loads, people.stdout.splitlines())}
    assert rows["biden"] == {"person": "biden", "images": 1, "enrolled": 1, "failed": 0, "pending": 0}

    forgot = lambdaface("forget", "biden", stack=stack)
    assert forgot.returncode == 0, forgot.stdout + forgot.stderr
    assert "forgot biden: 1 face(s) removed from the gallery, 1 image(s) deleted" in forgot.stdout
    people = lambdaface("people", "--json", stack=stack)
    assert "biden" not in {json.loads(line)["person"] for line in people.stdout.splitlines()}
    stack.wait_for_line(r"^EnrollFunction models/biden/biden.jpg: removed \(", timeout=60)

    again = lambdaface("recognize", "--json", str(faces_dir / "multi/two_people.jpg"), stack=stack)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["people"] == ["obama"]
    assert sorted(str(f["person"]) for f in doc["faces"]) == ["None", "obama"]


def test_a_failed_job_fails_the_watch(stack: StackProcess, faces_dir: Path) -> None:
    stack.client("s3").upload_file(str(faces_dir / "multi/kit_with_rose.jpg"), stack.bucket, "models/crowd/kit_with_rose.jpg")
    watched = subprocess.run(  # the watcher script, as well as `lambdaface watch`
        [sys.executable, "watcher/watch.py", "--job", f"s3://{stack.bucket}/models/crowd/kit_with_rose.jpg"],
        cwd=ROOT, env=stack.client_env(), capture_output=True, text=True, timeout=300,
    )
    assert watched.returncode == watch.EXIT_FAILED
    assert watched.stdout.startswith("models/crowd/kit_with_rose.jpg  enroll failed MULTIPLE_FACES  crowd  ")
    stack.wait_for_line(r"^EnrollFunction models/crowd/kit_with_rose.jpg: failed MULTIPLE_FACES \(", timeout=60)
    enrolled = lambdaface("enroll", "crowd", str(faces_dir / "multi/kit_with_rose.jpg"), stack=stack)
    assert enrolled.returncode == watch.EXIT_FAILED
    assert "enroll failed MULTIPLE_FACES" in enrolled.stdout


def test_the_stack_prints_a_line_per_job(stack: StackProcess, faces_dir: Path) -> None:
    """One line per job and outcome: succeeded, failed with its code, removed (a person no other
    test uses, forgotten again at the end)."""
    aws = StackClients(stack)
    aws.put("models/kit/kit2.jpg", (faces_dir / "people/kit_harington/kit2.jpg").read_bytes())
    aws.put("models/kit/notes.jpg", b"not a photo")
    aws.put("queries/lines/john1.jpg", (faces_dir / "seed/john1.jpg").read_bytes())
    stack.wait_for_line(r"^EnrollFunction models/kit/kit2.jpg: succeeded \(\d+\.\d s\)$", timeout=120)
    stack.wait_for_line(r"^EnrollFunction models/kit/notes.jpg: failed NOT_AN_IMAGE \(\d+\.\d s\)$", timeout=120)
    stack.wait_for_line(r"^RecognizeFunction queries/lines/john1.jpg: succeeded \(\d+\.\d s\)$", timeout=120)
    aws.delete("models/kit/kit2.jpg")
    aws.delete("models/kit/notes.jpg")
    stack.wait_for_line(r"^EnrollFunction models/kit/kit2.jpg: removed \(\d+\.\d s\)$", timeout=120)


def test_a_clean_restart_keeps_the_gallery(tmp_path: Path, faces_dir: Path) -> None:
    state = tmp_path / "state"
    with StackProcess(state, workers=1) as first:
        for person, image in (("john", "seed/john0.jpg"), ("obama", "people/obama/obama.jpg")):
            enrolled = lambdaface("enroll", person, str(faces_dir / image), stack=first)
            assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert first.stop(signal.SIGTERM) == 0
    with StackProcess(state, workers=1) as again:
        people = lambdaface("people", stack=again)
        assert re.search(r"^john\s+1\s+1\s+0\s+0$", people.stdout, re.M), people.stdout
        assert re.search(r"^obama\s+1\s+1\s+0\s+0$", people.stdout, re.M), people.stdout
        recognized = lambdaface("recognize", "--person", "john", str(faces_dir / "seed/john2.jpg"), stack=again)
        assert recognized.stdout.splitlines()[-1] == "Faces match: True", recognized.stdout + recognized.stderr
        assert again.stop(signal.SIGINT) == 0
