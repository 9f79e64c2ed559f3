"""The watcher's rules: which result answers which upload, how job names are read, what a result
line says. (The commands themselves run against a real stack in tests/test_e2e_local.py.)"""
from __future__ import annotations

import pytest

from lambdaface.watch import Expectation, line, parse_time, source_of

UPLOADED = parse_time("2024-05-01T12:00:07.000Z")  # S3's Date header: whole seconds
RESULT = {
    "job_id": "new",
    "kind": "recognize",
    "source": "queries/a.jpg",
    "source_etag": "abc",
    "status": "succeeded",
    "finished_at": "2024-05-01T12:00:07.400Z",
    "faces": [{"person": "john"}, {"person": None}],
    "people": ["john"],
}


def test_a_new_result_for_the_upload_is_accepted() -> None:
    assert Expectation("queries/a.jpg", not_job_id="old", not_before=UPLOADED, etag="abc", kind="recognize").accepts(RESULT)


@pytest.mark.parametrize(
    ("change", "expectation"),
    [
        ({"job_id": "old"}, Expectation("queries/a.jpg", not_job_id="old")),  # the result there before
        ({"source_etag": "other"}, Expectation("queries/a.jpg", etag="abc")),  # other bytes
        ({"kind": "forget"}, Expectation("queries/a.jpg", kind="recognize")),
        ({"finished_at": "2024-05-01T12:00:06.999Z"}, Expectation("queries/a.jpg", not_before=UPLOADED)),
    ],
)
def test_other_results_are_not(change: dict, expectation: Expectation) -> None:
    assert not expectation.accepts({**RESULT, **change})


def test_a_result_in_the_upload_second_counts() -> None:
    """LastModified and Date have one-second resolution: a result from the same second counts."""
    late_upload = parse_time("2024-05-01T12:00:07.900Z")
    assert Expectation("queries/a.jpg", not_before=late_upload).accepts(RESULT)


def test_results_without_the_optional_fields_are_judged_on_the_rest() -> None:
    bare = {k: v for k, v in RESULT.items() if k not in ("source_etag", "kind")}
    assert Expectation("queries/a.jpg", etag="abc", kind="recognize", not_job_id="old").accepts(bare)


@pytest.mark.parametrize(
    "name",
    ["queries/a b.jpg", "s3://faces/queries/a b.jpg", "results/queries/a b.jpg.json", "s3://faces/results/queries/a b.jpg.json"],
)
def test_job_names(name: str) -> None:
    assert source_of(name) == "queries/a b.jpg"


def test_result_lines() -> None:
    assert line(RESULT, 1.25) == "queries/a.jpg  recognize succeeded  john, 1 unknown  1.2 s"
    remembered = {**RESULT, "faces": [{"person": "john"}, {"person": None, "cluster": "u-3f9c0a1b2c4d"}]}
    assert line(remembered, 1.0) == "queries/a.jpg  recognize succeeded  john, 1 unknown (u-3f9c0a1b2c4d)  1.0 s"
    video = {**RESULT, "faces": None, "appearances": [{"person": "john"}, {"person": None, "cluster": "u-000000000001"}]}
    assert line(video, 1.0) == "queries/a.jpg  recognize succeeded  john, 1 unknown (u-000000000001)  1.0 s"
    failed = {"source": "models/x/y.jpg", "kind": "enroll", "status": "failed", "person": "x",
              "error": {"code": "NO_FACE", "message": "no face"}}
    assert line(failed, None) == "models/x/y.jpg  enroll failed NO_FACE  x  -"
    forgot = {"source": "models/x/y.jpg", "kind": "forget", "status": "succeeded", "person": "x", "removed": True}
    assert line(forgot, 0.25) == "models/x/y.jpg  forget succeeded  x (forgotten)  0.2 s"
