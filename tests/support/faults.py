"""FaultProxy: an HTTP proxy in front of moto that answers 503 SlowDown to the requests a test picks,
and FaultRules, named rules that fail requests until healed."""
from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

Rule = Callable[[str, str], bool]  # (method, path) -> fail it?
TARGET_WAIT_S = 120.0


class FaultProxy:
    """Forwards every request to its target, except those chosen to fail.

    It binds its own port (0: any free one) when made, so its `url` can be handed to a process
    before the target exists: `FaultProxy()` then `forward_to(endpoint)` once the target is up
    (requests that come before wait for it). `fail(n, when)` fails the next `n` requests for
    which `when(method, path)` is true; `injected` lists the (method, path) of each failure."""

    def __init__(self, target: str | None = None) -> None:
        self.remaining = 0
        self.when: Rule = lambda method, path: False
        self.injected: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._target: tuple[str, int] | None = None
        self._targeted = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        if target:
            self.forward_to(target)

    def forward_to(self, endpoint: str) -> None:
        """Where requests go from now on (http://host:port)."""
        parts = urlsplit(endpoint)
        assert parts.hostname and parts.port, endpoint
        self._target = (parts.hostname, parts.port)
        self._targeted.set()

    def fail(self, n: int, when: Rule) -> None:
        with self._lock:
            self.remaining, self.when = n, when

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            if self.remaining > 0 and self.when(method, path):
                self.remaining -= 1
                self.injected.append((method, path))
                return True
        return False

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        if self._should_fail(request.command, request.path):
            payload = b"<Error><Code>SlowDown</Code><Message>injected by FaultProxy</Message></Error>"
            request.send_response(503)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
            return
        assert self._targeted.wait(TARGET_WAIT_S), "FaultProxy: no target to forward to"
        assert self._target is not None
        upstream = http.client.HTTPConnection(*self._target, timeout=30)
        try:
            upstream.request(request.command, request.path, body=body, headers=dict(request.headers.items()))
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        request.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                request.send_header(name, value)
        length_header = response.getheader("Content-Length") if request.command == "HEAD" else None
        request.send_header("Content-Length", length_header or str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FaultRules:
    """Named rules on a FaultProxy: a request fails while any rule matches it."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.rules: dict[str, Rule] = {}
        self._lock = threading.Lock()
        proxy.fail(10**9, self)

    def __call__(self, method: str, path: str) -> bool:
        with self._lock:
            rules = list(self.rules.values())
        return any(rule(method, path) for rule in rules)

    def add(self, name: str, rule: Rule) -> None:
        with self._lock:
            self.rules[name] = rule

    def heal(self, name: str) -> None:
        with self._lock:
            del self.rules[name]

    def count(self, pattern: str) -> int:
        """Injected failures whose "METHOD /decoded/path" matches `pattern`."""
        return sum(1 for method, path in self.proxy.injected if re.search(pattern, f"{method} {unquote(path)}"))


def get_of(key: str) -> Rule:
    """S3 GETs of the object `key` (any bucket; path-style or URL-encoded)."""
    return lambda method, path: method == "GET" and unquote(path.split("?")[0]).endswith("/" + key)


def put_of(key: str) -> Rule:
    """S3 PUTs of the object `key`."""
    return lambda method, path: method == "PUT" and unquote(path.split("?")[0]).endswith("/" + key)


def dynamodb_call(method: str, path: str) -> bool:
    """DynamoDB's JSON API (and any other POST to /: SQS's JSON API too)."""
    return method == "POST" and path == "/"
