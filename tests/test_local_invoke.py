"""`lambdaface invoke FUNCTION -e EVENT.json`: the real handlers, run once on the events/ files,
against a local stack without workers (so nothing else touches the messages)."""
from __future__ import annotations

import json
from pathlib import Path

from support import ROOT
from support.cli import lambdaface
from support.stack import StackClients, StackProcess, stack_fixture

from lambdaface.invoke import with_bucket

stack = stack_fixture("invoke", workers=0)  # without workers: nothing else touches the messages


def _invoke(stack: StackProcess, function: str, event: str, **kwargs: str) -> dict:
    """`lambdaface invoke FUNCTION -e EVENT --endpoint-url ...` (the option, not the environment)."""
    done = lambdaface("invoke", function, "-e", event, "--endpoint-url", stack.endpoint, timeout=300, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_enroll_recognize_and_forget_from_the_event_files(stack: StackProcess, faces_dir: Path) -> None:
    aws = StackClients(stack)
    s3 = aws.s3
    # the objects the event files name, with the bytes their ETags say
    s3.upload_file(str(faces_dir / "seed/john0.jpg"), stack.bucket, "models/john/john0.jpg")
    s3.upload_file(str(faces_dir / "seed/john1.jpg"), stack.bucket, "queries/john at the café.jpg")

    assert _invoke(stack, "EnrollFunction", "events/enroll.json") == {"batchItemFailures": []}
    enrolled = aws.result("models/john/john0.jpg")
    assert (enrolled["kind"], enrolled["status"], enrolled["person"]) == ("enroll", "succeeded", "john")

    # short name, event on stdin
    event = (ROOT / "events/recognize.json").read_text()
    assert _invoke(stack, "recognize", "-", input=event) == {"batchItemFailures": []}
    recognized = aws.result("queries/john at the café.jpg")
    assert recognized["status"] == "succeeded" and recognized["people"] == ["john"]

    s3.delete_object(Bucket=stack.bucket, Key="models/john/john0.jpg")
    assert _invoke(stack, "enroll", "events/delete.json") == {"batchItemFailures": []}
    forgot = aws.result("models/john/john0.jpg")
    assert (forgot["kind"], forgot["removed"]) == ("forget", True)
    assert [face for face in aws.gallery() if face["person"] == "john"] == []


def test_an_unknown_function_is_refused() -> None:
    done = lambdaface("invoke", "NoSuchFunction", "-e", "events/enroll.json")
    assert done.returncode != 0
    assert "EnrollFunction, RecognizeFunction" in done.stderr


def test_with_bucket_points_every_s3_record_at_the_bucket() -> None:
    event = json.loads((ROOT / "events/enroll.json").read_text())
    body = json.loads(with_bucket(event, "photos")["Records"][0]["body"])
    assert body["Records"][0]["s3"]["bucket"] == {
        **json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["bucket"],
        "name": "photos",
        "arn": "arn:aws:s3:::photos",
    }
    test_event = json.loads((ROOT / "events/s3-test-event.json").read_text())
    assert json.loads(with_bucket(test_event, "photos")["Records"][0]["body"])["Bucket"] == "photos"


def test_the_sweep_from_the_scheduled_event_file(stack: StackProcess) -> None:
    """events/scheduled.json is what EventBridge sends UnknownsSweepFunction; with remembering off
    (the template's default) the sweep has nothing kept to forget."""
    assert _invoke(stack, "UnknownsSweepFunction", "events/scheduled.json") == {
        "remembering": False, "forgotten": 0, "complete": True}
