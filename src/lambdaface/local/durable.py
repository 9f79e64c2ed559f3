"""Deletes are durable before anyone sees them done: a WSGI middleware in front of moto's server.

A write that deletes (S3 DeleteObject(s), DynamoDB DeleteItem, a BatchWriteItem DeleteRequest, a
TransactWriteItems Delete, an UpdateItem that REMOVEs an embedding, e.g. a change-log vector) is
answered only once a save of the whole state that began after it has finished. So a forget's face
is gone from the state folder before the handler that deleted it goes on to write the forget's
result, and a crash (SIGKILL) after a result appears cannot bring the face back on restart.
Saves are coalesced: the writes that wait together share the next save.
"""
from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any, Callable, Iterable

from lambdaface.local.guard import read_body


def deletes(environ: dict[str, Any]) -> bool:
    """Does this request (S3, SQS or DynamoDB) delete stored data? SQS message deletes do not count:
    a message delivered again is handled again, idempotently."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target.startswith("DynamoDB"):
        operation = target.rpartition(".")[2]
        if operation == "DeleteItem":
            return True
        if operation in ("BatchWriteItem", "TransactWriteItems"):
            body = read_body(environ)
            return b'"DeleteRequest"' in body or b'"Delete"' in body
        if operation == "UpdateItem":
            return _removes_an_embedding(read_body(environ))
        return False
    if target or "/sqs/" in str(environ.get("HTTP_AUTHORIZATION", "")):
        return False
    method = str(environ.get("REQUEST_METHOD", ""))
    query = str(environ.get("QUERY_STRING", ""))
    return method == "DELETE" or (method == "POST" and "delete" in (p.partition("=")[0] for p in query.split("&")))


EMBEDDING_ATTRIBUTES = ("vector", "embedding")  # what the gallery's and the unknown store's items hold


def _removes_an_embedding(body: bytes) -> bool:
    """Does this UpdateItem REMOVE an embedding attribute (e.g. a change-log entry's vector)? Other
    REMOVEs (a job record's stale fields, on every job) need no save of their own."""
    try:
        request = json.loads(body)
        expression = str(request.get("UpdateExpression", ""))
        names = request.get("ExpressionAttributeNames") or {}
    except (ValueError, AttributeError):
        return True  # unreadable: moto will refuse it, a save costs only time
    match = re.search(r"\bREMOVE\b(.*?)(?=\b(?:SET|ADD|DELETE)\b|$)", expression, re.IGNORECASE | re.DOTALL)
    if not match:
        return False
    for path in match.group(1).split(","):
        top = path.strip().split(".")[0].split("[")[0]
        if str(names.get(top, top)) in EMBEDDING_ATTRIBUTES:
            return True
    return False


class SaveBarrier:
    """`wait()` returns once a call of `save` that began after `wait()` was called has returned."""

    def __init__(self, save: Callable[[], Any]) -> None:
        self.save = save
        self._changed = threading.Condition()
        self._started = 0  # saves begun
        self._finished = 0  # the last save finished (its number)
        self._running = False

    def wait(self) -> None:
        with self._changed:
            wanted = self._started + 1  # the next save to begin covers this caller's write
            while self._finished < wanted:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                self._started += 1
                number = self._started
                self._changed.release()
                try:
                    self.save()
                except Exception as exc:  # the stack goes on; the next save may succeed
                    print(f"lambdaface local: save after a delete failed: {exc}", file=sys.stderr, flush=True)
                finally:
                    self._changed.acquire()
                    self._finished = number
                    self._running = False
                    self._changed.notify_all()


class DurableDeletes:
    """WSGI middleware: a deleting request's response waits for `barrier` (after the app answered,
    so the save's own requests find every lock free)."""

    def __init__(self, app: Any, barrier: SaveBarrier) -> None:
        self.app = app
        self.barrier = barrier

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not deletes(environ):
            return self.app(environ, start_response)
        answer: dict[str, Any] = {}

        def held(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            answer.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: answer.setdefault("written", []).append(data)

        result = self.app(environ, held)
        try:
            parts = list(result)
            body = answer.pop("written", []) + parts
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if str(answer.get("status", "")).startswith("2"):
            self.barrier.wait()
        start_response(answer["status"], answer["headers"], answer["exc_info"]) if answer.get("exc_info") else \
            start_response(answer["status"], answer["headers"])
        return body
