"""Watch `results/`: print each new result, or wait for given jobs (`lambdaface watch`).

A job is named by its source key (`models/john/john0.jpg`, `queries/group.jpg`); its result is
`results/<source key>.json`. A result answers the *current* upload of its source when it finished
no earlier than the source's LastModified (and, when the result says so, for the same ETag); a
`forget` result answers a source that no longer exists.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, TextIO

from lambdaface import watch_events
from shared.config import BUCKET_ENV
from shared.pipeline.keys import RESULTS_PREFIX, result_key, source_of

SUCCEEDED = "succeeded"
EXIT_FAILED, EXIT_TIMEOUT = 1, 3


def parse_time(text: str | None) -> float | None:
    """ISO 8601 (`...Z`) -> epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _missing(exc: Exception) -> bool:
    """Whether a botocore ClientError says the object is not there."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The JSON document at `key`, or None when there is none."""
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def source_modified(s3: Any, bucket: str, source: str) -> tuple[float, str] | None:
    """(LastModified epoch, ETag) of the source object, or None when it does not exist."""
    try:
        head = s3.head_object(Bucket=bucket, Key=source)
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    return head["LastModified"].timestamp(), head["ETag"].strip('"')


@dataclass
class Expectation:
    """What result a waited-for job must produce to count as done."""

    source: str
    not_job_id: str | None = None  # the result that was there before the upload
    not_before: float | None = None  # epoch seconds; the result must not have finished earlier
    etag: str | None = None  # the uploaded object's ETag, checked against `source_etag` if present
    kind: str | None = None  # "enroll", "forget", "recognize"
    sent_at: float | None = None  # when this client uploaded or deleted the source (its own clock)

    @property
    def started(self) -> float | None:
        """When the job began, as best known: the client's send time, else the server's."""
        return self.sent_at if self.sent_at is not None else self.not_before

    def accepts(self, doc: dict[str, Any]) -> bool:
        if self.not_job_id and doc.get("job_id") == self.not_job_id:
            return False
        if self.kind and doc.get("kind") not in (None, self.kind):
            return False
        if self.etag and doc.get("source_etag") not in (None, self.etag):
            return False
        finished = parse_time(doc.get("finished_at"))
        # S3's LastModified and Date have one-second resolution
        return self.not_before is None or finished is None or finished >= int(self.not_before)


def current_expectation(s3: Any, bucket: str, source: str) -> Expectation:
    """What `watch --job` waits for: a result about the object as it is now (or its removal)."""
    found = source_modified(s3, bucket, source)
    if found is not None:
        modified, etag = found
        return Expectation(source, not_before=modified, etag=etag)
    doc = read_json(s3, bucket, result_key(source))
    if doc is not None and doc.get("kind") == "forget":
        return Expectation(source)  # deleted, and forgotten: that result is the answer
    # not uploaded yet (or deleted, not yet forgotten): wait for a result other than today's
    return Expectation(source, not_job_id=doc.get("job_id") if doc else None)


def seconds_to_result(doc: dict[str, Any], uploaded: float | None) -> float | None:
    finished = parse_time(doc.get("finished_at"))
    if uploaded is None or finished is None:
        return None
    return max(0.0, finished - uploaded)


def describe(doc: dict[str, Any]) -> str:
    """Who the result is about: the people recognized (and the unknown faces' clusters, when
    remembered), or the person enrolled or forgotten."""
    if doc.get("kind") == "recognize":
        seen = (doc.get("faces") or []) + (doc.get("appearances") or [])  # a photo's faces, a video's people
        unknown = [f for f in seen if not f.get("person")]
        clusters = [f["cluster"] for f in unknown if f.get("cluster")]
        names = list(doc.get("people") or [])
        if unknown:
            names.append(f"{len(unknown)} unknown" + (f" ({', '.join(clusters)})" if clusters else ""))
        return ", ".join(names) if names else "no face"
    person = doc.get("person") or "-"
    if doc.get("kind") == "forget":
        return f"{person} (forgotten)" if doc.get("removed") else f"{person} (was not enrolled)"
    return person


def line(doc: dict[str, Any], seconds: float | None) -> str:
    """One line per result: source, status, people, seconds from upload to result."""
    status = str(doc.get("status", "?"))
    error = doc.get("error") or {}
    if error:
        status = f"{status} {error.get('code', '')}".rstrip()
    took = f"{seconds:.1f} s" if seconds is not None else "-"
    return f"{doc.get('source', '?')}  {doc.get('kind', '?')} {status}  {describe(doc)}  {took}"


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total = total
        self.stream = stream
        self.enabled = total > 1 and stream.isatty()
        self.started = time.monotonic()

    def show(self, done: int) -> None:
        if self.enabled:
            width = 30
            filled = width * done // max(1, self.total)
            bar = "#" * filled + "." * (width - filled)
            elapsed = time.monotonic() - self.started
            print(f"\r[{bar}] {done}/{self.total} jobs  {elapsed:5.1f} s", end="", file=self.stream, flush=True)

    def clear(self) -> None:
        if self.enabled:
            print("\r" + " " * 60 + "\r", end="", file=self.stream, flush=True)


def wait_for(
    s3: Any,
    bucket: str,
    expectations: Iterable[Expectation],
    timeout: float | None = 300.0,
    interval: float = 0.5,
    on_result: Callable[[Expectation, dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Poll until every expectation has its result or `timeout` passes; {source: doc or None}."""
    pending = {e.source: e for e in expectations}
    found: dict[str, dict[str, Any] | None] = {source: None for source in pending}
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        for source, expectation in list(pending.items()):
            doc = read_json(s3, bucket, result_key(source))
            if doc is not None and expectation.accepts(doc):
                found[source] = doc
                del pending[source]
                if progress:
                    progress.clear()
                if on_result:
                    on_result(expectation, doc)
        if progress:
            progress.show(len(found) - len(pending))
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(interval)
    if progress:
        progress.clear()
    return found


def list_results(s3: Any, bucket: str) -> dict[str, tuple[str, float]]:
    """{result key: (ETag, LastModified epoch)} of every `results/*.json`."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RESULTS_PREFIX):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".json"):
                out[o["Key"]] = (o["ETag"], o["LastModified"].timestamp())
    return out


def follow(
    s3: Any, bucket: str, out: TextIO, timeout: float | None = None, interval: float = 1.0
) -> int:
    """Print a line for each result written from now on, until `timeout` (or Ctrl-C)."""
    seen = list_results(s3, bucket)
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        time.sleep(interval)
        now = list_results(s3, bucket)
        for key, (etag, _) in sorted(now.items(), key=lambda kv: kv[1][1]):
            if seen.get(key, ("",))[0] == etag:
                continue
            doc = read_json(s3, bucket, key)
            if doc is None:
                continue
            uploaded = parse_time(doc.get("event_time"))
            if uploaded is None:
                found = source_modified(s3, bucket, source_of(key))
                uploaded = found[0] if found else None
            print(line(doc, seconds_to_result(doc, uploaded)), file=out, flush=True)
        seen = now
    return 0


# --- command line --------------------------------------------------------------------------


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """--endpoint-url and --bucket, shared by the client commands."""
    p.add_argument("--endpoint-url", default=None,
                   help="S3 endpoint, e.g. http://127.0.0.1:4566 (default: $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--bucket", default=os.environ.get(BUCKET_ENV),
                   help="the stack's bucket (default: $LAMBDAFACE_BUCKET)")
    p.add_argument("--region", default=None, help="AWS region (default: the usual AWS configuration)")


def s3_client(args: argparse.Namespace) -> Any:
    """An S3 client from --endpoint-url/--region or the usual AWS chain (AWS_ENDPOINT_URL too)."""
    if not args.bucket:
        raise SystemExit("lambdaface: no bucket: pass --bucket or set LAMBDAFACE_BUCKET")
    import boto3  # here: the engine commands of the same CLI never need it

    kwargs = {k: v for k, v in (("endpoint_url", args.endpoint_url), ("region_name", args.region)) if v}
    return boto3.client("s3", **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `watch` subcommand."""
    p = subparsers.add_parser(
        "watch",
        help="print each new result, or wait for jobs with --job",
        description="Poll results/ and print one line per new result (source, status, people, "
        "seconds from upload to result). With --job, wait for those jobs and exit 0 if all "
        f"succeeded, {EXIT_FAILED} if one failed, {EXIT_TIMEOUT} on timeout.",
    )
    add_connection_args(p)
    p.add_argument("--job", nargs="+", metavar="KEY", default=None,
                   help="source keys (models/john/john0.jpg, queries/x.jpg, s3:// URLs) to wait for")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds (default: 300 with --job, else never)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    watch_events.add_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.events:
        return watch_events.main(args, sys.stdout)
    s3 = s3_client(args)
    if not args.job:
        try:
            return follow(s3, args.bucket, sys.stdout, args.timeout, args.interval)
        except KeyboardInterrupt:
            return 0
    expectations = [current_expectation(s3, args.bucket, source_of(j)) for j in args.job]
    return wait_and_report(s3, args.bucket, expectations, 300.0 if args.timeout is None else args.timeout,
                           args.interval)[0]


def wait_and_report(
    s3: Any, bucket: str, expectations: list[Expectation], timeout: float, interval: float, as_json: bool = False
) -> tuple[int, dict[str, dict[str, Any] | None]]:
    """Wait for the jobs, printing a line (or, `as_json`, the document) as each finishes.

    Returns (0, EXIT_FAILED or EXIT_TIMEOUT; {source: result or None})."""

    def report(e: Expectation, doc: dict[str, Any]) -> None:
        print(json.dumps(doc) if as_json else line(doc, seconds_to_result(doc, e.started)), flush=True)

    found = wait_for(s3, bucket, expectations, timeout, interval, report, Progress(len(expectations)))
    missing = [source for source, doc in found.items() if doc is None]
    for source in missing:
        print(f"{source}  timed out after {timeout:g} s", file=sys.stderr, flush=True)
    if missing:
        return EXIT_TIMEOUT, found
    return (0 if all(doc and doc.get("status") == SUCCEEDED for doc in found.values()) else EXIT_FAILED), found
