"""The synchronous API's handler in this process against moto: Function URL events (payload format
2.0) in, responses out; the seed example, verification, compare, parameters, errors, and what a
call without store=true leaves (nothing). The local stack's HTTP path: tests/test_sync_api_e2e.py."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from support.lambda_events import context
from support.moto import MotoResources

from handlers import api, enroll
from shared.aws import gallery_cache
from shared.pipeline import sync_api

BOUNDARY = "lambdaface-test-boundary"


def url_event(path: str, body: bytes, query: str = "", method: str = "POST", content_type: str = "image/jpeg") -> dict[str, Any]:
    """A Function URL request as Lambda passes it (payload format 2.0, binary body base64)."""
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": content_type, "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }


def multipart(**files: bytes) -> bytes:
    out = b""
    for name, data in files.items():
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.jpg\"\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.handler(event, context())
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def state(aws: MotoResources) -> tuple[Any, ...]:
    """Everything a call could write: every object with its ETag, every item of every table."""
    objects = sorted((o["Key"], o["ETag"]) for o in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", []))
    tables = [sorted(json.dumps(i, sort_keys=True, default=str) for i in aws.scan(t))
              for t in (aws.jobs_table, aws.gallery_table, aws.unknowns_table)]
    return objects, tables


@pytest.fixture
def john(aws: MotoResources, faces_dir: Path) -> MotoResources:
    """john0 enrolled as john (the enroll handler), no gallery cached in this process."""
    gallery_cache.forget_cache()
    aws.put("models/john/john0.jpg", (faces_dir / "seed" / "john0.jpg").read_bytes())
    assert enroll.handler(aws.event("models/john/john0.jpg"), context()) == {"batchItemFailures": []}
    return aws


def test_seed_example_in_one_call_each_and_nothing_written(john: MotoResources, faces_dir: Path) -> None:
    seed = faces_dir / "seed"
    before = state(john)
    for name, expected in (("john1.jpg", ["john"]), ("john2.jpg", ["john"]), ("jim-carrey.jpg", [])):
        status, doc = call(url_event("/recognize", (seed / name).read_bytes()))
        assert status == 200, doc
        assert doc["kind"] == "recognize" and doc["status"] == "succeeded"
        assert doc["people"] == expected, (name, doc)
        assert len(doc["faces"]) == 1 and set(doc["faces"][0]["box"]) == {"left", "top", "width", "height"}
        assert {"decode", "detect_embed", "load_gallery", "match", "total"} <= set(doc["timings_ms"])
        assert "job_id" not in doc and "source" not in doc and "annotated" not in doc
    status, verified = call(url_event("/recognize", (seed / "john1.jpg").read_bytes(), "person=john&annotate=true&top_k=1"))
    assert status == 200 and verified["person"] == "john" and verified["people"] == ["john"]
    assert base64.b64decode(verified["annotated_jpeg"])[:3] == b"\xff\xd8\xff"
    status, strict = call(url_event("/recognize", (seed / "john1.jpg").read_bytes(), "threshold=0.05"))
    assert status == 200 and strict["people"] == [] and strict["model"]["threshold"] == 0.05
    assert state(john) == before  # no result, job, unknown face, gallery change


def test_compare_two_images_without_a_gallery(aws: MotoResources, faces_dir: Path) -> None:
    seed = faces_dir / "seed"
    gallery_cache.forget_cache()
    body = multipart(a=(seed / "john1.jpg").read_bytes(), b=(seed / "john2.jpg").read_bytes())
    status, same = call(url_event("/compare", body, content_type=f"multipart/form-data; boundary={BOUNDARY}"))
    assert status == 200, same
    assert same["match"] is True and same["pairs"][0]["distance"] < 0.6
    body = multipart(a=(seed / "john1.jpg").read_bytes(), b=(seed / "jim-carrey.jpg").read_bytes())
    status, other = call(url_event("/compare", body, content_type=f"multipart/form-data; boundary={BOUNDARY}"))
    assert status == 200 and other["match"] is False and other["pairs"][0]["distance"] > 0.6
    assert [len(i["faces"]) for i in other["images"]] == [1, 1]
    assert gallery_cache.cached() == set()  # no gallery was read


@pytest.mark.parametrize("path, query, body, method, content_type, status, code", [
    ("/recognize", "", b"", "POST", "image/jpeg", 400, "EMPTY_FILE"),
    ("/recognize", "", b"hello, this is text\n" * 10, "POST", "image/jpeg", 415, "NOT_AN_IMAGE"),
    ("/recognize", "", b"x" * (sync_api.MAX_BODY_BYTES + 1), "POST", "image/jpeg", 413, "FILE_TOO_LARGE"),
    ("/recognize", "person=a..b", b"x", "POST", "image/jpeg", 400, "INVALID_PERSON"),
    ("/recognize", "person=a/b", b"x", "POST", "image/jpeg", 400, "INVALID_PERSON"),
    ("/recognize", "top_k=0", b"x", "POST", "image/jpeg", 400, "INVALID_PARAMETER"),
    ("/recognize", "threshold=nan", b"x", "POST", "image/jpeg", 400, "INVALID_PARAMETER"),
    ("/recognize", "store=maybe", b"x", "POST", "image/jpeg", 400, "INVALID_PARAMETER"),
    ("/recognize", "colour=red", b"x", "POST", "image/jpeg", 400, "INVALID_PARAMETER"),
    ("/compare", "", b"x", "POST", "image/jpeg", 400, "INVALID_BODY"),
    ("/recognize", "", b"", "GET", "image/jpeg", 405, "METHOD_NOT_ALLOWED"),
    ("/elsewhere", "", b"", "POST", "image/jpeg", 404, "NOT_FOUND"),
])
def test_bad_requests_get_their_code_and_status(aws: MotoResources, path: str, query: str, body: bytes, method: str,
                                                content_type: str, status: int, code: str) -> None:
    got, doc = call(url_event(path, body, query, method, content_type))
    assert (got, doc["error"]["code"]) == (status, code), doc
    assert doc["error"]["message"]


def test_compare_refuses_an_image_without_a_face(aws: MotoResources, faces_dir: Path) -> None:
    from PIL import Image
    from support.images import encode

    blank = encode(Image.new("RGB", (200, 200), "white"), "JPEG")
    body = multipart(a=(faces_dir / "seed" / "john1.jpg").read_bytes(), b=blank)
    status, doc = call(url_event("/compare", body, content_type=f"multipart/form-data; boundary={BOUNDARY}"))
    assert (status, doc["error"]["code"]) == (400, "NO_FACE") and "'b'" in doc["error"]["message"]


def test_an_aws_failure_is_a_503_to_retry(aws: MotoResources, faces_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gallery_cache.forget_cache()
    monkeypatch.setenv("GALLERY_TABLE", "no-such-table")
    status, doc = call(url_event("/recognize", (faces_dir / "seed" / "john1.jpg").read_bytes()))
    assert (status, doc["error"]["code"]) == (503, "UNAVAILABLE"), doc


def test_a_snapstart_snapshot_holds_no_gallery(aws: MotoResources, john: MotoResources) -> None:
    """The handler's init while Lambda takes a SnapStart snapshot loads the models, never the
    gallery (which would then live in every restored environment, beyond any forget)."""
    import os
    import subprocess
    import sys

    from support import ROOT

    code = ("import handlers.api\nfrom shared.aws import gallery_cache\nfrom shared.engine import models\n"
            "assert gallery_cache.cached() == set(), gallery_cache.cached()\n"
            "assert models.hog_detector.cache_info().currsize == 1, 'the models are in the snapshot'\n")
    env = {**os.environ, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_store_runs_the_photos_job_in_the_call_and_its_s3_event_is_no_second_job(john: MotoResources, faces_dir: Path) -> None:
    from handlers import recognize

    photo = (faces_dir / "seed" / "john1.jpg").read_bytes()
    status, doc = call(url_event("/recognize", photo, "store=true&annotate=true"))
    assert status == 200, doc
    source = doc["source"]
    assert source.startswith("queries/api/") and source.endswith(".jpg") and doc["job_id"] and doc["people"] == ["john"]
    assert john.get(source) == photo
    jpeg = base64.b64decode(doc.pop("annotated_jpeg"))
    assert jpeg[:3] == b"\xff\xd8\xff" and john.get(doc["annotated"]) == jpeg
    assert json.loads(john.get(f"results/{source}.json")) == doc  # the response is the stored result
    [job] = [j for j in john.jobs() if j["key"] == source]
    assert job["status"] == "succeeded" and job["job_id"] == doc["job_id"]
    # S3 then announces the photo to the recognize function: no second job, the result stays
    assert recognize.handler(john.event(source), context()) == {"batchItemFailures": []}
    assert [j["job_id"] for j in john.jobs() if j["key"] == source] == [doc["job_id"]]
    assert json.loads(john.get(f"results/{source}.json")) == doc


def test_store_of_bad_input_keeps_the_failed_result_as_an_upload_would(aws: MotoResources) -> None:
    status, doc = call(url_event("/recognize", b"hello, this is text\n" * 10, "store=true"))
    assert (status, doc["error"]["code"]) == (415, "NOT_AN_IMAGE")
    [stored] = [k for k in aws.keys("results/queries/api/")]
    assert json.loads(aws.get(stored))["error"]["code"] == "NOT_AN_IMAGE"
    status, doc = call(url_event("/recognize", b"x", "store=true&person=john"))
    assert (status, doc["error"]["code"]) == (400, "INVALID_PARAMETER")
