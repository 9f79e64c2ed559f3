"""A URL function's handler for tests of the local API pool (tests/test_local_api.py): answers
with its pid; `?sleep=S` first sleeps S seconds, `?exit=1` ends the process (a crash)."""
from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import parse_qsl


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    params = dict(parse_qsl(event.get("rawQueryString") or ""))
    if params.get("exit"):
        os._exit(1)
    time.sleep(float(params.get("sleep", 0)))
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"pid": os.getpid(), "path": event["rawPath"]}), "isBase64Encoded": False}
