"""Client commands against AWS or the local stack: enroll, recognize, forget, people.

They only talk to the bucket: upload to `models/<person>/` or `queries/`, delete from
`models/<person>/`, then wait for `results/<key>.json` (see lambdaface.watch).
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from lambdaface import watch
from lambdaface.watch import Expectation

MODELS, QUERIES = "models/", "queries/"


def _server_time(response: dict[str, Any]) -> float | None:
    """The `Date` of an S3 response (the server's clock, one-second resolution)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(date).timestamp() if date else None


def _previous_job(s3: Any, bucket: str, source: str) -> str | None:
    doc = watch.read_json(s3, bucket, watch.result_key(source))
    return doc.get("job_id") if doc else None


def upload(s3: Any, bucket: str, path: Path, key: str, kind: str) -> tuple[Expectation, float]:
    """Upload `path` to `key`; returns what its result must look like, and when it was sent."""
    previous = _previous_job(s3, bucket, key)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    sent = time.time()
    response = s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
    expectation = Expectation(
        key, not_job_id=previous, not_before=_server_time(response), etag=response["ETag"].strip('"'), kind=kind
    )
    return expectation, sent


def delete(s3: Any, bucket: str, key: str) -> tuple[Expectation, float]:
    """Delete `key` (a model image); returns what its `forget` result must look like."""
    previous = _previous_job(s3, bucket, key)
    sent = time.time()
    response = s3.delete_object(Bucket=bucket, Key=key)
    return Expectation(key, not_job_id=previous, not_before=_server_time(response), kind="forget"), sent


def model_keys(s3: Any, bucket: str, person: str) -> list[str]:
    """Every object under `models/<person>/`."""
    return [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{MODELS}{person}/")
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


def _wait(args: argparse.Namespace, s3: Any, sent: list[tuple[Expectation, float]]) -> tuple[int, dict[str, Any]]:
    """Wait for the jobs (unless --no-wait) and print a line per result."""
    if args.no_wait:
        for e, _ in sent:
            print(f"{e.source}  uploaded" if e.kind != "forget" else f"{e.source}  deleted")
        return 0, {}
    expectations = [e for e, _ in sent]
    uploaded = {e.source: t for e, t in sent}
    found = watch.wait_for(
        s3,
        args.bucket,
        expectations,
        args.timeout,
        args.interval,
        None if args.json else lambda e, doc: print(watch.line(doc, watch.seconds_to_result(doc, uploaded[e.source])), flush=True),
        watch.Progress(len(expectations)),
    )
    code = 0
    for source, doc in found.items():
        if doc is None:
            print(f"{source}  timed out after {args.timeout:g} s", file=sys.stderr)
            code = watch.EXIT_TIMEOUT
        else:
            if args.json:
                print(json.dumps(doc), flush=True)
            if doc.get("status") != watch.SUCCEEDED and code == 0:
                code = watch.EXIT_FAILED
    return code, found


# --- commands --------------------------------------------------------------------------------


def enroll(args: argparse.Namespace) -> int:
    """Upload IMAGE... to models/PERSON/ and wait for the enrollments."""
    if not args.person or "/" in args.person:
        raise SystemExit(f"lambdaface: {args.person!r} is not a valid person name")
    s3 = watch.s3_client(args)
    files = _images(args.images)
    sent = [upload(s3, args.bucket, f, f"{MODELS}{args.person}/{f.name}", "enroll") for f in files]
    return _wait(args, s3, sent)[0]


def recognize(args: argparse.Namespace) -> int:
    """Upload IMAGE... to queries/ and wait for the recognitions."""
    s3 = watch.s3_client(args)
    files = _images(args.images)
    sent = [upload(s3, args.bucket, f, f"{QUERIES}{f.name}", "recognize") for f in files]
    code, found = _wait(args, s3, sent)
    for f, (e, _) in zip(files, sent):
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
    """Delete every image under models/PERSON/ and wait until the gallery has dropped them."""
    s3 = watch.s3_client(args)
    keys = model_keys(s3, args.bucket, args.person)
    if not keys:
        print(f"lambdaface: no images under {MODELS}{args.person}/", file=sys.stderr)
        return watch.EXIT_FAILED
    code, found = _wait(args, s3, [delete(s3, args.bucket, k) for k in keys])
    if not args.no_wait and code == 0:
        removed = sum(1 for doc in found.values() if doc and doc.get("removed"))
        print(f"forgot {args.person}: {removed} face(s) removed from the gallery, {len(keys)} image(s) deleted")
    return code


def people(args: argparse.Namespace) -> int:
    """Everyone with images under models/, and how many of them are enrolled."""
    s3 = watch.s3_client(args)
    names = [
        p["Prefix"][len(MODELS) : -1]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=MODELS, Delimiter="/")
        for p in page.get("CommonPrefixes", [])
    ]
    rows = []
    for name in names:
        counts = {"enrolled": 0, "failed": 0, "pending": 0}
        keys = model_keys(s3, args.bucket, name)
        for key in keys:
            doc = watch.read_json(s3, args.bucket, watch.result_key(key))
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

    def common(p: argparse.ArgumentParser, waits: bool = True) -> None:
        watch.add_connection_args(p)
        p.add_argument("--json", action="store_true", help="print result documents as JSON lines")
        if waits:
            p.add_argument("--no-wait", action="store_true", help="do not wait for the results")
            p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default: %(default)s)")
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
    p.set_defaults(func=recognize)

    p = subparsers.add_parser("forget", help="delete PERSON's images; their faces leave the gallery")
    p.add_argument("person")
    common(p)
    p.set_defaults(func=forget)

    p = subparsers.add_parser("people", help="list the people with images under models/")
    common(p, waits=False)
    p.set_defaults(func=people)
