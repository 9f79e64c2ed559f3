"""The local stack's events: the jobs' events, as on AWS, go to EventBridge's default bus (moto);
a rule of the stack's own sends them to its events queue, which a thread drains into
`<state>/events.jsonl` (0600, one EventBridge event per line, kept RETENTION_DAYS days) and, with
`--webhook URL` (loopback only), POSTs each one as JSON, a bounded number of tries.

The queue is not saved with the state: an event still in it when the stack dies (not a clean
stop, which drains it) is lost; a line may repeat only if the stack dies between writing it and
deleting its message (ids already written in this run are skipped)."""
from __future__ import annotations

import calendar
import ipaddress
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from lambdaface.local.files import write_atomic

EVENTS_FILE = "events.jsonl"
NAME = "lambdaface-local-events"  # the stack's rule and queue
RETENTION_DAYS = 7  # lines older than this are dropped at start and at every autosave
WEBHOOK_ATTEMPTS = 4  # tries per event (0.5, 1, 2 s apart), then it is only in events.jsonl
WEBHOOK_TIMEOUT_S = 5.0


def webhook_refusal(url: str) -> str | None:
    """Why `url` cannot be the stack's webhook (None when it can): http(s) to a loopback host only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--webhook needs an http:// or https:// URL, got {url!r}"
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return (f"--webhook must be a loopback URL (127.0.0.1, ::1 or localhost), not {host!r}: "
                "events carry names and keys and would leave this machine")
    return None


def event_time(event: dict[str, Any]) -> float:
    """When the event was put (its `time`), in epoch seconds; 0 when unreadable."""
    try:
        return float(calendar.timegm(time.strptime(str(event["time"]), "%Y-%m-%dT%H:%M:%SZ")))
    except (KeyError, ValueError):
        return 0.0


class EventLog:
    """The rule, the queue and the thread that drains it (start, stop, expire)."""

    def __init__(self, state_dir: Path, sqs: Any, events: Any, webhook: str | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.path = state_dir / EVENTS_FILE
        self.sqs, self.events, self.webhook, self.log = sqs, events, webhook, log
        self.url = ""
        self.written: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_lock = threading.Lock()

    def start(self) -> None:
        """Create the queue and the rule (every `lambdaface` event), then drain in a thread."""
        self.url = self.sqs.create_queue(QueueName=NAME)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name=NAME, EventPattern=json.dumps({"source": ["lambdaface"]}), State="ENABLED")
        self.events.put_targets(Rule=NAME, Targets=[{"Id": "events-file", "Arn": arn}])
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then write what is left in the queue."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.drain(0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain(1)
            except Exception as exc:  # the server is stopping, or a bad message: go on
                self.log(f"events: {exc}")
                self._stop.wait(1.0)

    def drain(self, wait_s: int) -> int:
        """Write (and POST) every event waiting in the queue; how many."""
        done = 0
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                                WaitTimeSeconds=wait_s).get("Messages", [])
            if not messages:
                return done
            for m in messages:
                event = json.loads(m["Body"])
                if event.get("id") not in self.written:
                    self.append(event)
                    if self.webhook:
                        self.post(event)
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                done += 1
            wait_s = 0

    def append(self, event: dict[str, Any]) -> None:
        """One line in events.jsonl (created 0600)."""
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        with self._file_lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.written.add(str(event.get("id")))

    def post(self, event: dict[str, Any]) -> bool:
        """POST `event` to the webhook: WEBHOOK_ATTEMPTS tries at most; whether it was taken (2xx)."""
        body = json.dumps(event).encode()
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            request = urllib.request.Request(str(self.webhook), data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:  # noqa: S310 (loopback only)
                    if 200 <= answer.status < 300:
                        return True
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:  # the receiver refuses it: no retry
                    break
            except (OSError, ValueError):
                pass
        self.log(f"events: the webhook did not take event {event.get('id')} ({event.get('detail-type')}); "
                 f"it is in {self.path}")
        return False

    def expire(self, now: float, days: int = RETENTION_DAYS) -> int:
        """Drop the lines of events older than `days`; how many were dropped."""
        with self._file_lock:
            if not self.path.exists():
                return 0
            lines = self.path.read_bytes().splitlines(keepends=True)
            kept = [line for line in lines if _kept(line, now - days * 86400)]
            if len(kept) != len(lines):
                write_atomic(self.path, b"".join(kept))
            return len(lines) - len(kept)


def _kept(line: bytes, cutoff: float) -> bool:
    try:
        return event_time(json.loads(line)) >= cutoff
    except ValueError:
        return False
