"""`lambdaface find PERSON`: every photo (box, distance) and video (intervals, seconds on screen)
where PERSON (or an unknown cluster's id) appears, newest first, a page at a time, from the person
index (PEOPLE_INDEX_TABLE; see shared/pipeline/people_index.py).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

from lambdaface.since import parse_since
from shared.clock import iso

LOCAL_TABLE = "lambdaface-PeopleIndexTable"  # the local stack's name for it
TABLE_ENV = "PEOPLE_INDEX_TABLE"
LOCAL_UNKNOWNS_TABLE = "lambdaface-UnknownsTable"
UNKNOWNS_TABLE_ENV = "UNKNOWNS_TABLE"


def since_key(text: str | None, now: float | None = None) -> str | None:
    """`--since` (an age, `30m`, `12h`, `7d`, `1w`, or an ISO date or time, UTC unless it says
    otherwise) as the lowest sort key of the entries to list."""
    try:
        moment = parse_since(text, now)
    except ValueError:
        raise ValueError(f"--since {text!r}: give a date (2026-12-01), a time (2026-12-01T10:00:00Z) or an age (12h, 7d)") from None
    return None if moment is None else iso(moment)


def encode_token(key: dict[str, str] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def decode_token(token: str | None) -> dict[str, str] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(key, dict) and set(key) == {"pk", "sk"}:
            return {"pk": str(key["pk"]), "sk": str(key["sk"])}
    except ValueError:
        pass
    raise ValueError(f"--next {token!r} is not a token printed by `lambdaface find`")


def appearance(entry: dict[str, Any]) -> dict[str, Any]:
    """What `find` reports of one index entry."""
    out = {"source": entry["source"], "media": entry["media"], "at": entry["finished_at"],
           **({"person": entry["person"]} if "person" in entry else {"cluster": entry.get("cluster")})}
    if entry["media"] == "video":
        out.update(intervals=entry["intervals"], seconds=entry.get("seconds"))
    else:
        out.update(box=entry["box"], distance=entry.get("distance"))
    out["result"] = entry["result_key"]
    return out


def line(found: dict[str, Any]) -> str:
    """One appearance as a line of text."""
    if found["media"] == "video":
        spans = ", ".join(f"{a:g}-{b:g} s" for a, b in found["intervals"])
        return f"{found['at']}  video  {found['source']}  {found['seconds']:g} s on screen: {spans}"
    box = found["box"]
    distance = "" if found["distance"] is None else f"  distance {found['distance']:.3f}"
    return (f"{found['at']}  photo  {found['source']}  box {box['left']},{box['top']} "
            f"{box['width']}x{box['height']}{distance}")


def goes_by(args: argparse.Namespace) -> str:
    """The name to look up: PERSON, or for a cluster id the cluster it was merged into or the person
    it was named (their entries moved there); the id itself when the unknown-face table has no word."""
    from shared.engine.clustering import is_cluster_id

    if not is_cluster_id(args.person):
        return args.person
    from botocore.exceptions import ClientError

    from shared.aws.unknowns_table import UnknownStore
    from shared.pipeline import unknowns

    try:
        return unknowns.goes_by(UnknownStore(args.unknowns_table, ""), args.person)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return args.person
        raise


def find(args: argparse.Namespace) -> int:
    """Print one page of where args.person appears."""
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    try:
        since, start = since_key(args.since), decode_token(args.next)
    except ValueError as exc:
        print(f"lambdaface: {exc}", file=sys.stderr)
        return 2
    from shared.pipeline import people_index

    name = goes_by(args)
    entries, last = people_index.find(args.table, name, since, args.limit, start)
    found = [appearance(e) for e in entries]
    token = encode_token(last)
    if args.json:
        print(json.dumps({"person": args.person, **({"goes_by": name} if name != args.person else {}),
                          "appearances": found, "next": token}))
        return 0
    if name != args.person:
        print(f"{args.person} is now {name}: {name}'s appearances")
    for item in found:
        print(line(item))
    if not found:
        print(f"{args.person}: no appearances" + (f" since {args.since}" if args.since else ""))
    if token:
        print(f"more: lambdaface find {name} --next {token}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `find` subcommand."""
    p = subparsers.add_parser("find", help="where a person (or an unknown cluster) appears, newest first")
    p.add_argument("person", metavar="PERSON", help="a person's name, or a cluster id (u-...)")
    p.add_argument("--since", help="only appearances since a date, a time or an age (2026-12-01, 12h, 7d)")
    p.add_argument("--limit", type=int, default=50, help="appearances per page (default: %(default)s)")
    p.add_argument("--next", metavar="TOKEN", help="the next page: the token the previous page printed")
    p.add_argument("--json", action="store_true", help="print one JSON object: appearances and the next page's token")
    p.add_argument("--table", default=os.environ.get(TABLE_ENV) or LOCAL_TABLE,
                   help=f"the person index table (default: ${TABLE_ENV}, else the local stack's {LOCAL_TABLE})")
    p.add_argument("--unknowns-table", default=os.environ.get(UNKNOWNS_TABLE_ENV) or LOCAL_UNKNOWNS_TABLE,
                   help=f"where a cluster id's merges and naming are kept (default: ${UNKNOWNS_TABLE_ENV}, else {LOCAL_UNKNOWNS_TABLE})")
    p.add_argument("--endpoint-url", default=None, help="endpoint, e.g. http://127.0.0.1:4566 (default: $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--region", default=None, help="AWS region (default: the usual AWS configuration)")
    p.set_defaults(func=find)
