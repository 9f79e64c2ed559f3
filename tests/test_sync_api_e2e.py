"""The synchronous API end to end: `lambdaface local --remember-unknowns` (one stack for the module:
one worker per function, one API worker), requests signed as `lambdaface recognize --sync` /
`compare --sync` sign them, the real handler and models, the photos of ../shared/faces.

- the seed example through `--sync` (john0 enrolled; john1 and john2 match, jim-carrey does not);
- every bad-input code of tests/test_hardening_inputs.py a request can carry, with its HTTP status;
- without store=true nothing is written (bucket, every table, the events file), although unknown
  faces are remembered by this stack; with it, the photo's job runs in the call and keeps what an
  upload's job keeps, and the photo's S3 event is no second job;
- an enrollment is seen by the very next call of the warm worker, and so is a forget.
"""
from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import lambdaface
from support.images import background, encode
from support.stack import StackClients, StackProcess, stack_fixture
from support.waits import wait_until
from test_hardening_inputs import BAD, MAX_BYTES

from lambdaface import sync_client
from lambdaface.local.event_log import EVENTS_FILE
from lambdaface.local.process import REGION
from shared.pipeline import sync_api

stack = stack_fixture("sync-api", "--remember-unknowns", workers=1, env={"LAMBDAFACE_MAX_BYTES": str(MAX_BYTES)})
TABLES = ("lambdaface-JobsTable", "lambdaface-GalleryTable", "lambdaface-UnknownsTable", "lambdaface-PeopleIndexTable")

# The hardening tests' bad inputs as a request carries them. A request has no key: a person name
# arrives as ?person=, an image without a face is refused by /compare (recognition of a photo
# without a face succeeds, with no face), and the codes of enrollments and keys (MULTIPLE_FACES,
# FACE_TOO_SMALL, INVALID_KEY) do not arise. Without a name, the "videos" are judged by their bytes:
# text is not an image, empty is empty, a video header is a video, which the API refuses (S3 takes them).
STATUS = {"EMPTY_FILE": 400, "NOT_AN_IMAGE": 415, "TRUNCATED_IMAGE": 400, "TOO_MANY_PIXELS": 413,
          "FILE_TOO_LARGE": 413, "IMAGE_TOO_SMALL": 400, "UNSUPPORTED_FORMAT": 415, "INVALID_PERSON": 400,
          "NO_FACE": 400}
AS_A_REQUEST = {"a video that is not one": "NOT_AN_IMAGE", "a zero-length video": "EMPTY_FILE",
                "a video header with nothing after it": "UNSUPPORTED_FORMAT"}


def api(stack: StackProcess) -> sync_client.ApiClient:
    """The client `--sync` uses, aimed at the stack, signing with its keys."""
    from botocore.credentials import Credentials

    return sync_client.ApiClient(stack.endpoint, REGION, Credentials(stack.keys.access_key_id, stack.keys.secret_access_key))


def run(*args: str, stack: StackProcess) -> str:
    done = lambdaface(*args, stack=stack)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def everything(stack: StackProcess) -> tuple[Any, ...]:
    """What a call could write: every object (key, ETag), every item of every table, the events file."""
    aws = StackClients(stack)
    objects = sorted((o["Key"], o["ETag"]) for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
                     for o in page.get("Contents", []))
    items = {t: sorted(json.dumps(i, sort_keys=True, default=str) for i in aws.scan(t)) for t in TABLES}
    events = stack.state_dir / EVENTS_FILE
    return objects, items, events.read_bytes() if events.exists() else b""


def settled(stack: StackProcess) -> tuple[Any, ...]:
    """everything(), once the stack is idle and it stays the same for two seconds (a job's record
    and event follow its result by a moment)."""
    aws = StackClients(stack)
    last = None
    while True:
        wait_until("the stack to be idle", aws.idle)
        now = everything(stack)
        if now == last:
            return now
        last = now
        time.sleep(2)


@pytest.fixture(scope="module")
def john(stack: StackProcess, faces_dir: Path) -> None:
    out = run("enroll", "john", str(faces_dir / "seed" / "john0.jpg"), stack=stack)
    assert "enroll succeeded" in out, out


def test_seed_example_through_sync(stack: StackProcess, john: None, faces_dir: Path, tmp_path: Path) -> None:
    seed = faces_dir / "seed"
    out = run("recognize", "--sync", "--person", "john", "--out", str(tmp_path),
              str(seed / "john1.jpg"), str(seed / "john2.jpg"), str(seed / "jim-carrey.jpg"), stack=stack)
    lines = out.splitlines()
    assert "john1.jpg: Faces match: True" in lines
    assert "john2.jpg: Faces match: True" in lines
    assert "jim-carrey.jpg: Faces match: False" in lines
    for name in ("john1.jpg", "john2.jpg", "jim-carrey.jpg"):
        assert (tmp_path / f"{name}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # annotate=true: the JPEG in the response
    listed = run("recognize", "--sync", "--json", str(seed / "john2.jpg"), stack=stack)
    doc = json.loads(listed.splitlines()[0])
    assert doc["kind"] == "recognize" and doc["people"] == ["john"] and doc["faces"][0]["person"] == "john"
    assert doc["model"]["threshold"] == 0.6 and doc["timings_ms"]["detect_embed"] > 0
    compared = run("compare", "--sync", str(seed / "john1.jpg"), str(seed / "jim-carrey.jpg"), stack=stack)
    assert compared.splitlines()[-1] == "Faces match: False"
    compared = run("compare", "--sync", str(seed / "john1.jpg"), str(seed / "john2.jpg"), stack=stack)
    assert compared.splitlines()[-1] == "Faces match: True"


REQUEST_CASES = [case for case in BAD if AS_A_REQUEST.get(case.name, case.code) in STATUS]


def test_only_the_codes_of_enrollments_and_keys_are_left_out() -> None:
    assert {case.code for case in BAD if case not in REQUEST_CASES} == {"MULTIPLE_FACES", "FACE_TOO_SMALL", "INVALID_KEY"}
    assert len(REQUEST_CASES) >= 18


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[case.name for case in REQUEST_CASES])
def test_every_bad_input_gets_its_code_and_status(case: Any, stack: StackProcess, faces_dir: Path) -> None:
    data = case.make(faces_dir)
    code = AS_A_REQUEST.get(case.name, case.code)
    with pytest.raises(sync_client.ApiFailed) as failed:
        if code == "INVALID_PERSON":
            api(stack).recognize(data, person=case.key.split("/")[1])
        elif code == "NO_FACE":
            api(stack).compare((faces_dir / "seed" / "john1.jpg").read_bytes(), data)
        else:
            api(stack).recognize(data)
    error = failed.value.document["error"]
    assert (failed.value.status, error["code"]) == (STATUS[code], code), (case.name, error)
    if code == case.code and code not in ("INVALID_PERSON", "NO_FACE"):
        assert re.search(case.says, error["message"], re.I), (case.name, error["message"])


def test_bad_requests(stack: StackProcess, faces_dir: Path) -> None:
    client = api(stack)
    no_face = encode(background(faces_dir), "JPEG", quality=90)
    assert client.recognize(no_face)["faces"] == []  # as an S3 job: a photo without a face succeeds
    with pytest.raises(sync_client.ApiFailed) as failed:
        client.call("/recognize", b"x", {"top_k": "lots"})
    assert (failed.value.status, failed.value.document["error"]["code"]) == (400, "INVALID_PARAMETER")
    with pytest.raises(sync_client.ApiFailed) as failed:
        client.call("/recognize", b"\xff" * (sync_api.MAX_BODY_BYTES + 1))
    assert failed.value.status == 413 and failed.value.document["error"]["code"] == "FILE_TOO_LARGE"


def test_without_store_nothing_is_written(stack: StackProcess, john: None, faces_dir: Path) -> None:
    client = api(stack)
    seed = faces_dir / "seed"
    before = settled(stack)
    for name in ("john1.jpg", "jim-carrey.jpg"):  # a known face and an unknown one (this stack remembers those)
        doc = client.recognize((seed / name).read_bytes(), annotate=True, store=False)
        assert doc["status"] == "succeeded" and "source" not in doc and "job_id" not in doc
        assert base64.b64decode(doc["annotated_jpeg"])[:3] == b"\xff\xd8\xff"
    client.recognize((seed / "john2.jpg").read_bytes(), person="john")
    client.compare((seed / "john1.jpg").read_bytes(), (seed / "john2.jpg").read_bytes())
    with pytest.raises(sync_client.ApiFailed):
        client.recognize(b"")
    assert everything(stack) == before


def test_with_store_the_photos_job_runs_in_the_call(stack: StackProcess, john: None, faces_dir: Path) -> None:
    photo = (faces_dir / "seed" / "jim-carrey.jpg").read_bytes()
    doc = api(stack).recognize(photo, store=True)
    source = doc["source"]
    assert source.startswith("queries/api/") and source.endswith(".jpg"), source
    assert doc["status"] == "succeeded" and doc["job_id"] and doc["annotated"] == f"results/{source}.jpg"
    assert doc["faces"][0]["cluster"].startswith("u-")  # remembered, as any upload's unknown face
    aws = StackClients(stack)
    assert aws.get(source) == photo and json.loads(aws.get(f"results/{source}.json")) == doc
    # its S3 event reaches the recognize function, which leaves it (its line says what result was there
    # when it looked: perhaps none yet): one job, the result unchanged
    stack.wait_for_line(rf"^RecognizeFunction {re.escape(source)}: ")
    assert [j["job_id"] for j in aws.jobs() if j["key"] == source] == [doc["job_id"]]
    assert json.loads(aws.get(f"results/{source}.json")) == doc
    events = stack.state_dir / EVENTS_FILE
    wait_until("the job's event", lambda: events.exists() and source in events.read_text())


def test_an_enrollment_and_a_forget_are_seen_by_the_very_next_call(stack: StackProcess, faces_dir: Path) -> None:
    client = api(stack)
    obama = (faces_dir / "people" / "obama" / "obama2.jpg").read_bytes()
    assert "obama" not in client.recognize(obama)["people"]  # the worker's gallery is warm, without obama
    run("enroll", "obama", str(faces_dir / "people" / "obama" / "obama.jpg"), stack=stack)
    assert client.recognize(obama)["people"] == ["obama"]
    assert client.recognize(obama, person="obama")["people"] == ["obama"]
    run("forget", "obama", stack=stack)
    assert client.recognize(obama)["people"] == []
    assert client.recognize(obama, person="obama")["faces"][0]["person"] is None
