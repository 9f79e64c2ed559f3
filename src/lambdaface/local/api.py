"""The synchronous API on the local stack: a Function URL's requests, served by worker processes.

`ApiRouter` (WSGI, behind the guard, so with the same access rules as every other request: Host,
Origin, SigV4 with the stack's keys in remote mode) takes `/recognize` and `/compare`, builds the
event a Function URL gives Lambda (payload format 2.0, the body base64) and hands it to an
`ApiPool` worker: a process that imported the handler once and keeps its warm state (models,
gallery) between calls, as a Lambda execution environment does. When every worker is busy for
BUSY_WAIT_S the caller gets 429 (Lambda's throttling answer); a worker that dies or passes the
function's timeout is replaced and its caller gets 503; both are retried by clients.
"""
from __future__ import annotations

import base64
import json
import queue
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from lambdaface.local import lines
from lambdaface.local.guard import read_body
from lambdaface.local.spec import UrlFunctionSpec
from lambdaface.local.workers import LambdaContext, apply_env, load_handler
from lambdaface.local.workers import _redirect_output as redirect_output

PATHS = ("/recognize", "/compare")
MAX_REQUEST_BYTES = 6_291_456  # Lambda's synchronous request payload limit
BUSY_WAIT_S = 1.0  # how long a request waits for a free worker before 429


def is_api_path(path: str) -> bool:
    return path.rstrip("/") in PATHS


@dataclass(frozen=True)
class ApiWorkerConfig:
    """What an API worker process needs (pickled across `spawn`)."""

    function: UrlFunctionSpec
    region: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None


def serve(config: ApiWorkerConfig, conn: Any) -> None:
    """An API worker's main loop: an event in, the handler's response out, until the pipe closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stack decides when its workers stop
    redirect_output(config.log_path)
    apply_env(config.env)
    handler = load_handler(config.function.handler)
    fn = config.function
    while True:
        try:
            event = conn.recv()
        except (EOFError, OSError):
            return
        context = LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, config.region)
        started = time.monotonic()
        print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
        try:
            response = handler(event, context)
        except Exception as exc:  # Lambda: a function error, 502 to the caller
            traceback.print_exc(file=sys.stderr)
            response = _json(502, {"error": {"code": "FUNCTION_ERROR", "message": f"{type(exc).__name__}: {exc}"}})
        print(f"END RequestId: {context.aws_request_id}", flush=True)
        print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {(time.monotonic() - started) * 1000:.2f} ms", flush=True)
        conn.send(response)


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body),
            "isBase64Encoded": False}


class _Worker:
    def __init__(self, pool: "ApiPool", index: int) -> None:
        self.index = index
        self.conn, child = pool.ctx.Pipe(duplex=True)
        self.process = pool.ctx.Process(target=serve, args=(pool.config, child), daemon=True,
                                        name=f"lambdaface-{pool.config.function.logical_id}-{index}")
        self.process.start()
        child.close()

    def stop(self) -> None:
        self.conn.close()  # the worker's recv() ends: it exits
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ApiPool:
    """`count` worker processes of one URL function; `invoke(event)` runs an event on a free one."""

    def __init__(self, ctx: Any, config: ApiWorkerConfig, count: int, log: Any = print) -> None:
        self.ctx, self.config, self.log = ctx, config, log
        self.idle: queue.Queue[_Worker] = queue.Queue()
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.closed = False
        for i in range(count):
            self._add(_Worker(self, i))

    def _add(self, worker: _Worker) -> None:
        with self.lock:
            self.workers.append(worker)
        self.log("API " + lines.worker_started(worker.index, self.config.function.logical_id, worker.process.pid))
        self.idle.put(worker)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's response; 429 when no worker is free, 503 when the worker died or timed out."""
        try:
            worker = self.idle.get(timeout=BUSY_WAIT_S)
        except queue.Empty:
            return _json(429, {"error": {"code": "TOO_MANY_REQUESTS",
                                         "message": "every API worker is busy (Lambda's throttling); retry"}})
        timeout = self.config.function.timeout_s
        try:
            worker.conn.send(event)
            if worker.conn.poll(timeout + 1):
                response = worker.conn.recv()
                self.idle.put(worker)
                return response
            why = f"timed out after {timeout} s"
        except (EOFError, OSError, BrokenPipeError) as exc:
            why = f"exited ({exc.__class__.__name__})"
        self._replace(worker, why)
        return _json(503, {"error": {"code": "UNAVAILABLE", "message": f"the API worker {why}; retry"}})

    def _replace(self, worker: _Worker, why: str) -> None:
        self.log(f"API worker {worker.index} ({self.config.function.logical_id}) {why}, starting another")
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        with self.lock:
            self.workers.remove(worker)
            if self.closed:
                return
        self._add(_Worker(self, worker.index))

    def pids(self) -> list[int]:
        with self.lock:
            return [w.process.pid for w in self.workers]

    def stop(self) -> None:
        with self.lock:
            self.closed = True
            workers = list(self.workers)
        for worker in workers:
            worker.stop()


def event_of(environ: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The Function URL event (payload format 2.0) of a WSGI request."""
    headers = {k[5:].lower().replace("_", "-"): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for name, key in (("content-type", "CONTENT_TYPE"), ("content-length", "CONTENT_LENGTH")):
        if environ.get(key):
            headers[name] = str(environ[key])
    now = time.time()
    path = str(environ.get("PATH_INFO", "/"))
    query = str(environ.get("QUERY_STRING", ""))
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "local", "domainName": headers.get("host", ""),
            "http": {"method": str(environ.get("REQUEST_METHOD", "GET")), "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": str(environ.get("REMOTE_ADDR", "")), "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True,
    }


class ApiRouter:
    """WSGI middleware: the API's paths to the pool (None while the stack starts: 503), the rest on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pool: ApiPool | None = None
        self.why = "the API is starting; retry"  # the 503's message while there is no pool

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not is_api_path(str(environ.get("PATH_INFO", ""))):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_REQUEST_BYTES:
            response = _json(413, {"error": {"code": "FILE_TOO_LARGE", "message":
                                             f"the request has {length:,} bytes; Lambda's limit is {MAX_REQUEST_BYTES:,}"}})
        elif self.pool is None:
            response = _json(503, {"error": {"code": "UNAVAILABLE", "message": self.why}})
        else:
            response = self.pool.invoke(event_of(environ, read_body(environ)))
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
        status = int(response.get("statusCode", 200))
        headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items() if k.lower() != "content-length"]
        start_response(f"{status} {_REASONS.get(status, 'Status')}", [*headers, ("Content-Length", str(len(data)))])
        return [data]


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
            502: "Bad Gateway", 503: "Service Unavailable"}
