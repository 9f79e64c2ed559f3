"""Client commands against AWS or the local stack: enroll, recognize, forget, people.

They only talk to the bucket: upload to `models/<person>/` or `queries/`, delete from
`models/<person>/`, then wait for `results/<key>.json` (see lambdaface.watch).
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from lambdaface import watch
from lambdaface.watch import Expectation
from shared.config import FUNCTION_TIMEOUT_MAX_S, QUEUE_VISIBILITY_S
from shared.pipeline.keys import MODELS_PREFIX, QUERIES_PREFIX, person_prefix, result_key

# A failed forget attempt's message comes back after the queue's visibility timeout: wait for that
# retry to finish too (tests/test_template.py checks the template's timeout is QUEUE_VISIBILITY_S).
FORGET_TIMEOUT_S = QUEUE_VISIBILITY_S + FUNCTION_TIMEOUT_MAX_S + 60
ENROLL_QUEUE_LOCAL = "lambdaface-EnrollQueue"  # the local stack's name for it


REFUSED_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "UnrecognizedClientException",
                 "InvalidSignatureException", "AccessDenied", "AccessDeniedException")


def refusal_message(exc: BaseException) -> str | None:
    """A one-line explanation when the endpoint refused our keys (a local stack in remote mode, or
    AWS), or when there are none; None for any other error."""
    if type(exc).__name__ == "NoCredentialsError":
        return ("no AWS credentials: for AWS, configure them as usual; a loopback local stack takes any "
                "(e.g. AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test); one in remote mode its own keys")
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if status != 403 or error.get("Code") not in REFUSED_CODES:
        return None
    return (f"the endpoint refused the request ({error.get('Code')}: {error.get('Message', '')}); a local stack "
            "in remote mode needs its keys, e.g. AWS_SHARED_CREDENTIALS_FILE=.lambdaface/credentials")


def _server_time(response: dict[str, Any]) -> float | None:
    """The `Date` of an S3 response (the server's clock, one-second resolution)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(date).timestamp() if date else None


def _previous_job(s3: Any, bucket: str, source: str) -> str | None:
    doc = watch.read_json(s3, bucket, result_key(source))
    return doc.get("job_id") if doc else None


def upload(s3: Any, bucket: str, path: Path, key: str, kind: str) -> Expectation:
    """Upload `path` to `key`; returns what its result must look like."""
    return upload_bytes(s3, bucket, path.read_bytes(), key, kind)


def upload_bytes(s3: Any, bucket: str, data: bytes, key: str, kind: str) -> Expectation:
    """Upload `data` to `key` (its type guessed from the name); returns what its result must look like."""
    previous = _previous_job(s3, bucket, key)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    sent = time.time()
    response = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return Expectation(key, not_job_id=previous, not_before=_server_time(response),
                       etag=response["ETag"].strip('"'), kind=kind, sent_at=sent)


def delete(s3: Any, bucket: str, key: str) -> Expectation:
    """Delete `key` (a model image); returns what its `forget` result must look like."""
    previous = _previous_job(s3, bucket, key)
    sent = time.time()
    response = s3.delete_object(Bucket=bucket, Key=key)
    return Expectation(key, not_job_id=previous, not_before=_server_time(response), kind="forget", sent_at=sent)


def model_keys(s3: Any, bucket: str, person: str) -> list[str]:
    """Every object under `models/<person>/`."""
    return [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=person_prefix(person))
        for o in page.get("Contents", [])
    ]


def _images(paths: list[str]) -> list[Path]:
    """The files to upload; exits with 2 on a missing file or two files with one name."""
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise SystemExit(f"lambdaface: {f}: no such file")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise SystemExit("lambdaface: two images with the same file name would overwrite each other")
    return files


def wait_for_jobs(args: argparse.Namespace, s3: Any, sent: list[Expectation]) -> tuple[int, dict[str, Any]]:
    """Wait for the jobs (unless --no-wait) and print a line (or with --json, the document) per result."""
    if args.no_wait:
        for e in sent:
            print(f"{e.source}  uploaded" if e.kind != "forget" else f"{e.source}  deleted")
        return 0, {}
    return watch.wait_and_report(s3, args.bucket, sent, args.timeout, args.interval, as_json=args.json)


# --- commands --------------------------------------------------------------------------------


def enroll(args: argparse.Namespace) -> int:
    """Upload IMAGE... to models/PERSON/ and wait for the enrollments."""
    if not args.person or "/" in args.person:
        raise SystemExit(f"lambdaface: {args.person!r} is not a valid person name")
    s3 = watch.s3_client(args)
    files = _images(args.images)
    sent = [upload(s3, args.bucket, f, f"{person_prefix(args.person)}{f.name}", "enroll") for f in files]
    return wait_for_jobs(args, s3, sent)[0]


def recognize(args: argparse.Namespace) -> int:
    """Upload IMAGE... to queries/ and wait for the recognitions (--sync: one API call each)."""
    files = _images(args.images)
    if not args.sync and (args.threshold is not None or args.top_k is not None or args.store or args.api_url):
        raise SystemExit("lambdaface: --threshold, --top-k, --store and --api-url go with --sync")
    if args.sync:
        from lambdaface import sync_client

        return sync_client.recognize(args, files)
    s3 = watch.s3_client(args)
    sent = [upload(s3, args.bucket, f, f"{QUERIES_PREFIX}{f.name}", "recognize") for f in files]
    code, found = wait_for_jobs(args, s3, sent)
    for f, e in zip(files, sent):
        doc = found.get(e.source)
        if doc is None:
            continue
        if args.person:
            prefix = f"{f.name}: " if len(files) > 1 else ""
            print(f"{prefix}Faces match: {args.person in (doc.get('people') or [])}", flush=True)
        if args.out and doc.get("annotated"):
            target = Path(args.out) / Path(doc["annotated"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(args.bucket, doc["annotated"], str(target))
            print(f"annotated: {target}", flush=True)
    return code


def forget(args: argparse.Namespace) -> int:
    """Delete every image under models/PERSON/, forget PERSON's gallery faces whose images are gone
    already (a lost event), wait until the gallery has dropped them all, then print the receipt."""
    s3 = watch.s3_client(args)
    keys = model_keys(s3, args.bucket, args.person)
    orphans = [] if args.images_only else _forget_orphans(args, s3)  # before the deletes: only faces whose image is gone
    if not keys and not orphans:
        print(f"lambdaface: no images under {person_prefix(args.person)} and no face of {args.person} in the gallery",
              file=sys.stderr)
        return watch.EXIT_FAILED
    code, found = wait_for_jobs(args, s3, orphans + [delete(s3, args.bucket, k) for k in keys])
    if args.no_wait or code != 0:
        return code
    removed = sum(1 for doc in found.values() if doc and doc.get("removed"))
    print(f"forgot {args.person}: {removed} face(s) removed from the gallery, {len(keys)} image(s) deleted"
          + (f", {len(orphans)} of them without an image" if orphans else ""))
    if args.receipt:
        from lambdaface import audit

        return audit.receipt(args, args.person)
    return code


def _forget_orphans(args: argparse.Namespace, s3: Any) -> list[Expectation]:
    """Removal events for PERSON's gallery faces whose image is already gone (pipeline/reconcile.py);
    what their forget results must look like."""
    from lambdaface.endpoint import configure
    from shared.config import current_config
    from shared.pipeline import reconcile

    configure(args)
    os.environ["GALLERY_TABLE"] = args.gallery_table
    try:
        queue_url = args.enroll_queue_url or _local_queue_url(args)
        before = {f: _previous_job(s3, args.bucket, f) for f in _gallery_keys(args)}
        report = reconcile.reconcile(current_config(), args.bucket, person=args.person, queue_url=queue_url)
    except Exception as exc:  # no access to the gallery or the queue: the deletes still go ahead
        print(f"lambdaface: faces without an image were not checked: {exc}", file=sys.stderr)
        return []
    return [Expectation(key, not_job_id=before.get(key), kind="forget", sent_at=time.time()) for key in report.forgotten]


def _gallery_keys(args: argparse.Namespace) -> list[str]:
    from shared.aws import inventory

    return [f.image_key for f in inventory.face_keys(args.gallery_table, args.person)]


def _local_queue_url(args: argparse.Namespace) -> str:
    """$ENROLL_QUEUE_URL, else the local stack's enroll queue at the endpoint."""
    from shared.aws.clients import client

    return client("sqs").get_queue_url(QueueName=ENROLL_QUEUE_LOCAL)["QueueUrl"]


def people(args: argparse.Namespace) -> int:
    """Everyone with images under models/, and how many of them are enrolled."""
    s3 = watch.s3_client(args)
    names = [
        p["Prefix"][len(MODELS_PREFIX) : -1]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=MODELS_PREFIX, Delimiter="/")
        for p in page.get("CommonPrefixes", [])
    ]
    rows = []
    for name in names:
        counts = {"enrolled": 0, "failed": 0, "pending": 0}
        keys = model_keys(s3, args.bucket, name)
        for key in keys:
            doc = watch.read_json(s3, args.bucket, result_key(key))
            if doc is None or doc.get("kind") != "enroll":
                counts["pending"] += 1
            else:
                counts["enrolled" if doc.get("status") == watch.SUCCEEDED else "failed"] += 1
        rows.append((name, len(keys), counts))
    if args.json:
        for name, images, counts in rows:
            print(json.dumps({"person": name, "images": images, **counts}))
        return 0
    print(f"{'person':<24} {'images':>6} {'enrolled':>8} {'failed':>6} {'pending':>7}")
    for name, images, c in rows:
        print(f"{name:<24} {images:>6} {c['enrolled']:>8} {c['failed']:>6} {c['pending']:>7}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `enroll`, `recognize`, `forget` and `people`."""

    def common(p: argparse.ArgumentParser, waits: bool = True, timeout: float = 300.0) -> None:
        watch.add_connection_args(p)
        p.add_argument("--json", action="store_true", help="print result documents as JSON lines")
        if waits:
            p.add_argument("--no-wait", action="store_true", help="do not wait for the results")
            p.add_argument("--timeout", type=float, default=timeout, help="seconds to wait (default: %(default)s)")
            p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")

    p = subparsers.add_parser("enroll", help="enroll PERSON from IMAGE... (one face each)")
    p.add_argument("person")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    common(p)
    p.set_defaults(func=enroll)

    p = subparsers.add_parser("recognize", help="recognize every face in IMAGE...")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--person", help="print 'Faces match: True|False': is PERSON in the image?")
    p.add_argument("--out", metavar="DIR", help="download the annotated images to DIR")
    common(p)
    from lambdaface import sync_client

    sync_client.add_sync_args(p)
    p.add_argument("--top-k", type=int, default=None, help="with --sync: candidates listed per face")
    p.add_argument("--store", action="store_true", help="with --sync: also keep the photo and its result, as an upload")
    p.set_defaults(func=recognize)

    p = subparsers.add_parser("forget", help="delete PERSON's images; their faces leave the gallery")
    p.add_argument("person")
    common(p, timeout=FORGET_TIMEOUT_S)  # past one retry: a failed attempt comes back after the visibility timeout
    from lambdaface import audit

    audit.add_table_args(p)
    p.add_argument("--enroll-queue-url", default=os.environ.get("ENROLL_QUEUE_URL"),
                   help="where to send the removals of faces whose image is gone "
                        "(default: $ENROLL_QUEUE_URL, else the local stack's enroll queue)")
    p.add_argument("--images-only", action="store_true", help="only delete the images (no gallery check)")
    p.add_argument("--receipt", action="store_true", help="then print `lambdaface audit PERSON`'s receipt (exit 1 if a copy is left)")
    p.add_argument("--state-dir", default=None, help="with --receipt: the local stack's state folder (see `audit`)")
    p.set_defaults(func=forget)

    p = subparsers.add_parser("people", help="list the people with images under models/")
    common(p, waits=False)
    p.set_defaults(func=people)
