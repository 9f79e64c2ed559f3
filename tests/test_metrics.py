"""The jobs' CloudWatch metrics (EMF lines, shared/pipeline/metrics.py): their shape, and on a local
run every job counted once with its dimensions, a redelivered message counted not at all."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.images import background, encode
from support.lambda_events import s3_event_body
from support.stack import StackClients, StackProcess, handler_logs, stack_fixture
from support.waits import wait_until

from shared.pipeline import metrics

FUNCTIONS = ("EnrollFunction", "RecognizeFunction", "VideoFunction")


def emf_lines(text: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [d for d in docs if "_aws" in d]


def check_emf(doc: dict[str, Any]) -> None:
    """A valid EMF document whose metrics and dimension sets are in the catalogue."""
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == metrics.NAMESPACE and isinstance(doc["_aws"]["Timestamp"], int)
    for definition in directive["Metrics"]:
        name = definition["Name"]
        assert name in metrics.CATALOGUE, name
        assert isinstance(doc[name], list) and all(isinstance(v, float) for v in doc[name]), doc
        for dimension_set in directive["Dimensions"]:
            assert tuple(sorted(dimension_set)) in {tuple(sorted(s)) for s in metrics.CATALOGUE[name]}, (name, dimension_set)
            assert all(isinstance(doc[d], str) and doc[d] for d in dimension_set), (dimension_set, doc)


def test_a_recognized_photo(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.job_finished({"job_id": "j1", "kind": "recognize", "source": "queries/a.jpg", "status": "succeeded",
                          "faces": [{}, {}, {}], "timings_ms": {"detect_embed": 300.5, "total": 412.0}})
    [doc] = emf_lines(capsys.readouterr().out)
    check_emf(doc)
    assert (doc["kind"], doc["status"], doc["service"], doc["job"], doc["key"]) == \
        ("recognize", "succeeded", "lambdaface", "j1", "queries/a.jpg")
    assert (doc["Jobs"], doc["FacesPerImage"], doc["EngineTime"], doc["JobDuration"]) == ([1.0], [3.0], [300.5], [412.0])
    assert "VideoSeconds" not in doc and "job_id" not in doc  # log readers pick a job's records by job_id


def test_a_failed_job_counts_its_error_code(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.job_finished({"job_id": "j2", "kind": "enroll", "source": "models/x/a.jpg", "status": "failed",
                          "error": {"code": "NO_FACE", "message": "no face"}, "timings_ms": {"total": 20.0}})
    job, error = emf_lines(capsys.readouterr().out)
    check_emf(job), check_emf(error)
    assert (job["kind"], job["status"], job["Jobs"]) == ("enroll", "failed", [1.0]) and "FacesPerImage" not in job
    assert (error["code"], error["JobErrors"], error["kind"]) == ("NO_FACE", [1.0], "enroll")
    assert error["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["code", "service"], ["service"]]


def test_a_video(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.job_finished({"job_id": "j3", "kind": "recognize", "media": "video", "source": "queries/v.mp4",
                          "status": "succeeded", "duration_s": 9.176, "timings_ms": {"segments": 9000.0, "total": 6000.0}})
    [doc] = emf_lines(capsys.readouterr().out)
    check_emf(doc)
    assert (doc["kind"], doc["VideoSeconds"], doc["EngineTime"]) == ("video", [9.176], [9000.0])


def test_emitting_never_fails_a_job(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.job_finished({"job_id": "j4", "kind": "recognize", "status": "succeeded", "timings_ms": {"total": "soon"}})
    assert emf_lines(capsys.readouterr().out) == []  # logged as a warning, nothing half-written


# --- a local run ------------------------------------------------------------------------------

stack = stack_fixture("metrics", workers=1)


def test_each_job_is_counted_once_with_its_dimensions(stack: StackProcess, faces_dir: Path) -> None:
    aws = StackClients(stack)
    aws.put("models/obama/obama.jpg", (faces_dir / "people/obama/obama.jpg").read_bytes())
    stack.result("models/obama/obama.jpg")
    aws.put("models/obama/empty.jpg", b"")
    aws.put("queries/two.jpg", (faces_dir / "multi/obama_and_biden.jpg").read_bytes())
    aws.put("queries/nothing.jpg", encode(background(faces_dir).resize((300, 1166)), "JPEG"))
    aws.put("queries/broken.jpg", b"not a photo")
    sources = ["models/obama/empty.jpg", "queries/two.jpg", "queries/nothing.jpg", "queries/broken.jpg"]
    results = {"models/obama/obama.jpg": stack.result("models/obama/obama.jpg"), **{k: stack.result(k) for k in sources}}
    aws.delete("models/obama/empty.jpg")
    wait_until("the forget result", lambda: (aws.maybe_result("models/obama/empty.jpg") or {}).get("kind") == "forget")
    results["forget"] = aws.result("models/obama/empty.jpg")

    # The same S3 event delivered again: its job is already finished, so it is not counted again.
    two = results["queries/two.jpg"]
    body = json.loads(s3_event_body(stack.bucket, "queries/two.jpg", etag=two["source_etag"]))
    body["Records"][0]["eventTime"] = two["event_time"]
    aws.sqs.send_message(QueueUrl=aws.queue_url("RecognizeQueue"), MessageBody=json.dumps(body))
    wait_until("the redelivery acknowledged", lambda: [
        line for line in handler_logs(stack.state_dir, "RecognizeFunction")
        if line.get("job_id") == two["job_id"] and "already finished" in line.get("message", "")], timeout=120)
    assert stack.stop() == 0

    emf = {f: [d for d in handler_logs(stack.state_dir, f) if "_aws" in d] for f in FUNCTIONS}
    jobs = [d for f in FUNCTIONS for d in emf[f] if "Jobs" in d]
    for doc in jobs:
        check_emf(doc)
    by_job = {}
    for doc in jobs:
        assert doc["job"] not in by_job, f"job counted twice: {doc}"
        by_job[doc["job"]] = doc
    assert set(by_job) == {r["job_id"] for r in results.values()}  # every job once, nothing else
    for result in results.values():
        doc = by_job[result["job_id"]]
        assert (doc["kind"], doc["status"], doc["key"]) == (result["kind"], result["status"], result["source"])
        assert doc["JobDuration"] == [pytest.approx(result["timings_ms"]["total"])]
    assert by_job[two["job_id"]]["FacesPerImage"] == [3.0]
    assert by_job[results["queries/nothing.jpg"]["job_id"]]["FacesPerImage"] == [0.0]

    errors = sorted((d["code"], d["job"]) for f in FUNCTIONS for d in emf[f] if "JobErrors" in d)
    assert errors == sorted((r["error"]["code"], r["job_id"]) for r in results.values() if r["status"] == "failed")
    assert [code for code, _ in errors] == sorted(["EMPTY_FILE", "NOT_AN_IMAGE"])

    # Powertools' cold start, once per worker process, named after its function.
    cold = {(d["function_name"], d["service"]) for f in FUNCTIONS for d in emf[f] if "ColdStart" in d}
    assert cold == {("lambdaface-EnrollFunction", "lambdaface"), ("lambdaface-RecognizeFunction", "lambdaface")}, cold
    assert len([d for d in emf["RecognizeFunction"] if "ColdStart" in d]) == 1  # one worker, one cold start
