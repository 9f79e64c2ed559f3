"""A handler with failures on demand, to test the local stack's SQS event source (not a stand-in
for the real handlers, which tests/test_e2e_*.py run). The stack's workers import it as
`support.scripted_handler.handler` (support.stack.SCRIPTED_HANDLER, with tests/ on PYTHONPATH).

Keys decide what happens to a record: `fail` is reported in batchItemFailures, `crash` kills the
process on its first delivery, `raise` raises on its first delivery, `slow` outlives any timeout
on its first delivery; anything else succeeds."""
from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import unquote_plus


def _keys(record: dict[str, Any]) -> list[str]:
    body = json.loads(record["body"])
    return [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        first = record["attributes"]["ApproximateReceiveCount"] == "1"
        for key in _keys(record):
            if "crash" in key and first:
                os._exit(3)
            if "slow" in key and first:
                time.sleep(600)
            if "raise" in key and first:
                raise RuntimeError(f"asked to raise on {key}")
            if "fail" in key:
                failures.append({"itemIdentifier": record["messageId"]})
    assert context.get_remaining_time_in_millis() > 0
    assert os.environ["JOBS_TABLE"] == "lambdaface-JobsTable"
    return {"batchItemFailures": failures}
