"""Worker processes: Lambda's SQS event source, run locally.

Each worker is bound to one function, like a Lambda execution environment: it imports the
handler once (cold start), then long-polls the function's queue over HTTP, calls
`handler(event, context)` with the same SQS batch event Lambda builds, deletes the messages that
succeeded and leaves the failed ones to come back after the queue's visibility timeout (and to go
to the dead-letter queue after maxReceiveCount, which moto's SQS does).

A scheduled function's run (`run_scheduled`) is a process of its own: it imports the handler,
calls it once with EventBridge's Scheduled Event, reports how it went and exits.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import boto3

from lambdaface.local.spec import ACCOUNT_ID, FunctionSpec, ScheduledSpec
from shared.aws.events import BadEvent, parse_body
from shared.pipeline.keys import API_PREFIX, result_key

POLL_WAIT_S = 1  # long-poll length; also how often a worker checks that its parent lives


class _Stopping(BaseException):
    """Raised by SIGTERM while a worker waits for messages."""


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process needs (pickled across `spawn`)."""

    function: FunctionSpec
    queue_url: str
    queue_arn: str
    endpoint: str
    region: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None  # the function's log (CloudWatch's stand-in); None: inherit stderr


@dataclass
class LambdaContext:
    """The parts of Lambda's context object handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    region: str
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.invoked_function_arn = (
            f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda puts it in the event's `Records`."""
    attributes = {
        "DataType": "dataType",
        "StringValue": "stringValue",
        "BinaryValue": "binaryValue",
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: {
                "stringListValues": [],
                "binaryListValues": [],
                **{attributes[k]: v for k, v in value.items() if k in attributes},
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(response: Any, records: list[dict[str, Any]], report_failures: bool) -> set[str]:
    """The message ids Lambda would leave on the queue after `handler` returned `response`."""
    if not report_failures:
        return set()
    all_ids = {r["messageId"] for r in records}
    if response is None:
        return set()
    try:
        listed = response.get("batchItemFailures") or []
        ids = {item["itemIdentifier"] for item in listed}
    except (AttributeError, KeyError, TypeError):
        return all_ids  # a malformed response fails the whole batch, as on Lambda
    if any(not i or i not in all_ids for i in ids):
        return all_ids
    return ids


def s3_objects(body: str) -> list[tuple[str, str, str]] | None:
    """(bucket, key, event name) of each S3 record in a message, parsed as the handlers parse it;
    [] for `s3:TestEvent`, None when the message is not an S3 event (the pipeline's own)."""
    try:
        return [(e.bucket, e.key, e.event_name) for e in parse_body(body)]
    except BadEvent:
        return None


def job_outcome(s3: Any, bucket: str, key: str, event: str) -> str:
    """What the result document says about the job on `key` (for the one-line report)."""
    if event.startswith("ObjectRemoved"):
        return "removed"
    if key.startswith(API_PREFIX):
        return "stored by the synchronous API, which ran its job in the call"
    try:
        result = json.loads(s3.get_object(Bucket=bucket, Key=result_key(key))["Body"].read())
    except Exception:
        return "no result"
    status = str(result.get("status", "?"))
    code = (result.get("error") or {}).get("code")
    return f"{status} {code}" if code else status


def apply_env(env: dict[str, str]) -> None:
    """Set a function's environment; the user's own AWS settings must not leak into it."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[name]
    os.environ.update(env)


def load_handler(spec: str) -> Callable[[dict[str, Any], Any], Any]:
    module, _, name = spec.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _Signals:
    """SIGTERM sets `stop`; while the worker waits for messages it also interrupts the wait."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop
        self.polling = False
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_: Any) -> None:
        self.stop.set()
        if self.polling:
            raise _Stopping


def _redirect_output(log_path: str | None) -> None:
    """Handler output to the function's log file, else to stderr (the stack's stdout is for its lines)."""
    if log_path:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
    else:
        os.dup2(2, 1)


def run(config: WorkerConfig, busy: Any, reports: Any, stop: Any) -> None:
    """The worker process's main loop; returns when `stop` is set (or the parent is gone)."""
    signals = _Signals(stop)
    _redirect_output(config.log_path)
    apply_env(config.env)
    parent = os.getppid()
    sqs = boto3.client("sqs", endpoint_url=config.endpoint, region_name=config.region)
    s3 = boto3.client("s3", endpoint_url=config.endpoint, region_name=config.region)
    handler = load_handler(config.function.handler)
    while not stop.is_set() and os.getppid() == parent:
        try:
            signals.polling = True
            messages = _receive(sqs, config)
        except _Stopping:  # messages received but not handled come back after the visibility timeout
            break
        except Exception as exc:  # the stack is stopping or gone: look at the parent again
            print(f"receive failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(POLL_WAIT_S)
            continue
        finally:
            signals.polling = False
        if messages:
            records = [sqs_record(m, config.queue_arn, config.region) for m in messages]
            busy.value = time.time()
            failed, seconds, error = _invoke(handler, records, config)
            busy.value = 0.0
            _delete(sqs, config.queue_url, [r for r in records if r["messageId"] not in failed])
            for r in records:
                reports.send(_report(s3, config.function, r, r["messageId"] not in failed, seconds, error))


def _invoke(handler: Callable[..., Any], records: list[dict[str, Any]], config: WorkerConfig) -> tuple[set[str], float, str | None]:
    """Call the handler with one batch, printing Lambda's START/END/REPORT lines: (failed ids, seconds, error)."""
    fn = config.function
    context = LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, config.region)
    started = time.monotonic()
    error = None
    print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
    try:
        response = handler({"Records": records}, context)
        failed = failed_ids(response, records, fn.report_batch_item_failures)
    except Exception as exc:  # Lambda: the invocation failed, every message comes back
        traceback.print_exc(file=sys.stderr)
        error = f"{type(exc).__name__}: {exc}"
        failed = {r["messageId"] for r in records}
    seconds = time.monotonic() - started
    print(f"END RequestId: {context.aws_request_id}", flush=True)
    print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {seconds * 1000:.2f} ms\t"
          f"Messages: {len(records)}\tFailed: {len(failed)}", flush=True)
    return failed, seconds, error


# --- scheduled functions -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledConfig:
    """What one run of a scheduled function needs (pickled across `spawn`)."""

    function: ScheduledSpec
    region: str
    run: int  # 1 for the run at start, then 2, 3, ...
    env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None


def scheduled_event(function: ScheduledSpec, region: str, when: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge sends a scheduled function (or the schedule's own `Input`)."""
    if function.input is not None:
        return json.loads(function.input)
    when = when or datetime.now(timezone.utc)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{function.rule or function.name}"],
        "detail": {},
    }


def run_scheduled(config: ScheduledConfig, busy: Any, reports: Any) -> None:
    """One run of a scheduled function in this (new) process: report {"ok", "seconds", "error"}."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides: it waits for the run or kills it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _redirect_output(config.log_path)
    apply_env(config.env)
    fn = config.function
    try:
        handler = load_handler(fn.handler)
    except Exception as exc:  # Lambda: Runtime.ImportModuleError, the invocation fails
        traceback.print_exc(file=sys.stderr)
        reports.send({"ok": False, "seconds": 0.0, "error": f"{type(exc).__name__}: {exc}"})
        return
    context = LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, config.region)
    event = scheduled_event(fn, config.region)
    print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
    busy.value = time.time()
    started = time.monotonic()
    error = None
    try:
        handler(event, context)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    busy.value = 0.0
    print(f"END RequestId: {context.aws_request_id}", flush=True)
    print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {seconds * 1000:.2f} ms\t"
          f"Scheduled run: {config.run}", flush=True)
    reports.send({"ok": error is None, "seconds": seconds, "error": error})


def _delete(sqs: Any, queue_url: str, done: list[dict[str, Any]]) -> None:
    """Delete the messages the handler succeeded with, ten per request."""
    for i in range(0, len(done), 10):
        entries = [{"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(done[i : i + 10])]
        try:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:  # the message comes back and the handler sees it again
            print(f"delete failed: {exc}", file=sys.stderr, flush=True)


def _report(s3: Any, fn: FunctionSpec, record: dict[str, Any], ok: bool, seconds: float, error: str | None) -> dict[str, Any]:
    """What the stack prints about one message: a line per job in it."""
    objects = s3_objects(record["body"])
    if objects is None:  # a message of the pipeline's own
        jobs = [(f"message {record['messageId']}", "done" if ok else "")]
    else:
        jobs = [(key, job_outcome(s3, bucket, key, event) if ok else "") for bucket, key, event in objects]
    attempt = int(record["attributes"].get("ApproximateReceiveCount", 1))
    return {"function": fn.logical_id, "jobs": jobs, "ok": ok, "attempt": attempt, "seconds": seconds, "error": error}


def _receive(sqs: Any, config: WorkerConfig) -> list[dict[str, Any]]:
    """One batch, as Lambda's poller gathers it (BatchSize, MaximumBatchingWindowInSeconds)."""
    fn = config.function
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + fn.batching_window_s
    while len(messages) < fn.batch_size:
        wait = POLL_WAIT_S if not messages else max(0, min(POLL_WAIT_S, int(deadline - time.monotonic())))
        got = sqs.receive_message(
            QueueUrl=config.queue_url,
            MaxNumberOfMessages=min(10, fn.batch_size - len(messages)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        messages.extend(got)
        if not messages or time.monotonic() >= deadline:
            break
    return messages
