"""A scheduled handler with failures on demand, to test how the local stack runs scheduled
functions (not a stand-in for handlers/unknowns_sweep.py). The stack imports it as
`support.scheduled_handler.handler` (support.stack.SCHEDULED_HANDLER, with tests/ on PYTHONPATH).

It works in the directory $SCHEDULED_DIR: each run appends one JSON line to runs.jsonl (when it
started and ended, its event, the environment variables tests look at, the context's remaining
time) and writes an item to the unknowns table ($UNKNOWNS_TABLE, over the stack's endpoint), so a
test sees the run in the stack's own state. A file in that directory changes the next runs:
`raise` raises, `exit` ends the process with status 3, `slow` sleeps past any timeout, `sleep`
holds a number of seconds to sleep before returning."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import boto3

ENV = ("UNKNOWNS_TABLE", "LAMBDAFACE_REMEMBER_UNKNOWNS", "LAMBDAFACE_UNKNOWN_RETENTION_DAYS",
       "LAMBDAFACE_UNKNOWN_THRESHOLD", "LAMBDAFACE_BUCKET", "JOBS_TABLE", "AWS_ENDPOINT_URL",
       "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "SCHEDULED_TAG")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    directory = Path(os.environ["SCHEDULED_DIR"])
    started = time.time()
    remaining_ms = context.get_remaining_time_in_millis()
    run = {"pid": os.getpid(), "started": started, "event": event, "remaining_ms": remaining_ms,
           "function_name": context.function_name, "env": {name: os.environ.get(name) for name in ENV}}
    dynamodb = boto3.client("dynamodb")  # AWS_ENDPOINT_URL: the stack
    dynamodb.put_item(TableName=os.environ["UNKNOWNS_TABLE"],
                      Item={"person": {"S": "#scheduled"}, "image_key": {"S": f"{started:.6f}"}})
    if (directory / "raise").exists():
        raise RuntimeError("asked to raise")
    if (directory / "exit").exists():
        os._exit(3)
    if (directory / "slow").exists():
        time.sleep(600)
    if (directory / "sleep").exists():
        time.sleep(float((directory / "sleep").read_text()))
    run["later_remaining_ms"] = context.get_remaining_time_in_millis()
    run["ended"] = time.time()
    with open(directory / "runs.jsonl", "a") as runs:
        runs.write(json.dumps(run) + "\n")
    return {"swept": True}
