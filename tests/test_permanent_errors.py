"""Failures that retrying cannot fix finish the job on the first delivery (issue 20, item 6), through
the real handlers against moto's server: an over-long key is INVALID_KEY before anything is written,
and an AWS error that says "never" (ValidationException, AccessDenied, ResourceNotFound, ...) is
recorded as REQUEST_REFUSED instead of being retried until the dead-letter queue."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import botocore.exceptions
import pytest
from support.lambda_events import context
from support.moto import MotoResources, moto_resources

from handlers import enroll, recognize
from shared import errors
from shared.aws import gallery_cache
from shared.pipeline import delivery, keys

OK: dict[str, Any] = {"batchItemFailures": []}


@pytest.fixture
def remembering(moto_endpoint: str) -> Iterator[MotoResources]:
    with moto_resources(moto_endpoint, LAMBDAFACE_REMEMBER_UNKNOWNS="true") as fresh:
        yield fresh
    gallery_cache.forget_cache()


def long_key(prefix: str, total_bytes: int) -> str:
    return prefix + "a" * (total_bytes - len(prefix) - len(".jpg")) + ".jpg"


def test_a_query_key_too_long_for_the_unknown_store_is_invalid_key_at_once(remembering: MotoResources,
                                                                          faces_dir: Path) -> None:
    # 1000 bytes: S3 takes it, results/<key>.json fits (1013), but the unknown store's face id
    # `<key>#<etag>#<n>` is over DynamoDB's 1024-byte key limit: a ValidationException, retried
    # until the dead-letter queue before the fix.
    key = long_key("queries/", 1000)
    remembering.put(key, (faces_dir / "people/kit_harington/kit1.jpg").read_bytes())
    assert recognize.handler(remembering.event(key), context()) == OK
    result = remembering.result(key)
    assert result["status"] == "failed" and result["error"]["code"] == errors.INVALID_KEY
    assert f"{keys.MAX_KEY_BYTES} bytes" in result["error"]["message"]
    [job] = remembering.jobs()
    assert job["status"] == "failed" and job["attempts"] == 1 and job["error"] == result["error"]
    assert [i for i in remembering.scan(remembering.unknowns_table) if not i["person"].startswith("#")] == []


def test_a_model_key_too_long_is_invalid_key_and_enrolls_nothing(aws: MotoResources, faces_dir: Path) -> None:
    key = long_key("models/john/", keys.MAX_KEY_BYTES + 1)
    aws.put(key, (faces_dir / "seed/john0.jpg").read_bytes())
    assert enroll.handler(aws.event(key), context()) == OK
    [job] = aws.jobs()
    assert job["status"] == "failed" and job["error"]["code"] == errors.INVALID_KEY and job["attempts"] == 1
    assert aws.scan(aws.gallery_table) == []
    # multi-byte characters count as their UTF-8 bytes, as S3 and DynamoDB count them
    assert len(("é" * 500).encode()) == 1000
    with pytest.raises(errors.FaceError, match="INVALID_KEY"):
        keys.check_key_length("models/john/" + "é" * 450 + ".jpg")
    keys.check_key_length("models/john/" + "e" * 450 + ".jpg")


def test_a_missing_table_fails_the_job_on_its_first_delivery(aws: MotoResources, faces_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALLERY_TABLE", "no-such-table")
    key = "models/john/john0.jpg"
    aws.put(key, (faces_dir / "seed/john0.jpg").read_bytes())
    assert enroll.handler(aws.event(key), context()) == OK  # acknowledged: no retry, no dead letter
    result = aws.result(key)
    assert result["status"] == "failed" and result["error"]["code"] == errors.REQUEST_REFUSED
    assert result["error"]["message"].startswith("ResourceNotFoundException: ")
    [job] = aws.jobs()
    assert job["status"] == "failed" and job["attempts"] == 1 and job["error"] == result["error"]


def client_error(code: str, status: int = 400) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "m"},
                                            "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize("code", ["ValidationException", "AccessDenied", "AccessDeniedException",
                                  "ResourceNotFoundException", "NoSuchBucket", "KeyTooLongError",
                                  "InvalidParameterValue", "AWS.SimpleQueueService.NonExistentQueue"])
def test_errors_that_never_go_away_are_permanent(code: str) -> None:
    assert delivery.is_permanent(client_error(code))


@pytest.mark.parametrize("exc", [client_error("ThrottlingException"), client_error("SlowDown", 503),
                                 client_error("TransactionCanceledException"), client_error("InternalError", 500),
                                 RuntimeError("gallery change kept conflicting"), ConnectionError("reset")])
def test_errors_worth_another_try_are_not(exc: Exception) -> None:
    assert not delivery.is_permanent(exc)
