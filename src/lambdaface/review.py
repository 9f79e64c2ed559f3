"""`lambdaface review`: the review queue, every face whose result marks it `"review": true` (its
distance lies within LAMBDAFACE_REVIEW_BAND of the threshold; see shared/pipeline/results.py).

    lambdaface review [--json] [--limit N]

Reads the newest `--limit` results under `results/queries/` (photos and videos). Each face is
listed with its source key, its number in the result (1-based: the `#` of the report's table), its
box, who it was named (or unknown), its nearest person and distance, and, for a photo, the two
commands that settle it: `lambdaface correct KEY --face N --is PERSON` (confirm) or `--not PERSON`
(reject). A video frame's face is listed with its time `t` and its number in that frame (`correct
KEY --at T --face N`).
`queued` and `commands` are what the report page (report_page.py) shows too.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lambdaface import watch
from shared.pipeline.keys import QUERIES_PREFIX, RESULTS_PREFIX

DEFAULT_LIMIT = 1000
THREADS = 8


def _nearest(face: dict[str, Any]) -> dict[str, Any] | None:
    """The face's nearest person and distance: its first candidate (photos), else whom it was named."""
    candidates = face.get("candidates") or []
    if candidates and isinstance(candidates[0], dict):
        return {"person": candidates[0].get("person"), "distance": candidates[0].get("distance")}
    if face.get("person"):
        return {"person": face["person"], "distance": face.get("distance")}
    return None


def queued(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The faces of one result document marked for review, in order (photo faces, then each frame's)."""
    if not isinstance(doc, dict) or doc.get("status") != "succeeded" or doc.get("kind") != "recognize":
        return []
    source = doc.get("source")
    out = []
    for n, face in enumerate(doc.get("faces") or [], start=1):
        if isinstance(face, dict) and face.get("review") is True:
            out.append({"source": source, "face": n, "box": face.get("box"), "person": face.get("person"),
                        "distance": face.get("distance"), "nearest": _nearest(face)})
    for frame in doc.get("frames") or []:
        if not isinstance(frame, dict):
            continue
        for n, face in enumerate(frame.get("faces") or [], start=1):
            if isinstance(face, dict) and face.get("review") is True:
                out.append({"source": source, "t": frame.get("t"), "face": n, "box": face.get("box"),
                            "person": face.get("person"), "distance": face.get("distance"), "nearest": _nearest(face)})
    return out


def commands(item: dict[str, Any]) -> list[str]:
    """The command lines that confirm and reject a face's nearest person (a video frame's face by its
    time, `--at T`; none without a nearest person, or for a frame without a time)."""
    nearest = (item.get("nearest") or {}).get("person")
    t = item.get("t")
    if not nearest or not item.get("source") or ("t" in item and not isinstance(t, (int, float))):
        return []
    at = f" --at {t:g}" if "t" in item else ""
    base = f"lambdaface correct {shlex.quote(str(item['source']))}{at} --face {int(item['face'])}"
    return [f"{base} --is {shlex.quote(str(nearest))}", f"{base} --not {shlex.quote(str(nearest))}"]


def line(item: dict[str, Any]) -> str:
    """One queued face as text."""
    box = item.get("box") or {}
    t = item.get("t")
    where = (f"t={t:g} s face {item['face']}" if isinstance(t, (int, float)) else f"t={t} face {item['face']}") \
        if "t" in item else f"face {item['face']}"
    named = item.get("person") or "unknown"
    nearest = item.get("nearest") or {}
    near = (f"nearest {nearest.get('person')} {nearest['distance']:.3f}" if isinstance(nearest.get("distance"), (int, float))
            else "no nearest person")
    return (f"{item['source']}  {where}  box {box.get('left')},{box.get('top')},{box.get('width')},{box.get('height')}"
            f"  {named}  {near}")


def newest_results(s3: Any, bucket: str, limit: int) -> list[str]:
    """The keys of the newest `limit` query results."""
    found = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RESULTS_PREFIX + QUERIES_PREFIX)
             for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return [o["Key"] for o in sorted(found, key=lambda o: o["LastModified"], reverse=True)[:max(0, limit)]]


def collect(s3: Any, bucket: str, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Every face queued for review in the newest `limit` results, by source key."""
    keys = newest_results(s3, bucket, limit)
    with ThreadPoolExecutor(THREADS) as pool:
        docs = list(pool.map(lambda k: watch.read_json(s3, bucket, k), keys))
    items = [item for doc in docs if doc for item in queued(doc)]
    return sorted(items, key=lambda i: (str(i["source"]), i.get("t") or 0.0, i["face"]))


def main(args: argparse.Namespace) -> int:
    """Print the review queue."""
    if args.limit < 1:
        print("lambdaface review: --limit must be at least 1", file=sys.stderr)
        return 2
    items = collect(watch.s3_client(args), args.bucket, args.limit)
    if args.json:
        print(json.dumps({"faces": [{**i, "commands": commands(i)} for i in items]}))
        return 0
    for item in items:
        print(line(item))
        for command in commands(item):
            print(f"    {command}")
    print(f"{len(items)} face(s) to review")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `review` subcommand."""
    p = subparsers.add_parser("review", help="list the faces whose distance sits in the review band (confirm or correct them)")
    watch.add_connection_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object: the faces and their commands")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="newest query results read (default: %(default)s)")
    p.set_defaults(func=main)
