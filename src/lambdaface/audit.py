"""`lambdaface audit PERSON`: a receipt of every place a face of PERSON could live.

Looks at, and prints what it finds in:
- `models/PERSON/` (the photos themselves);
- the gallery: PERSON's face items, and change-log entries about PERSON that still carry a vector;
- every object under `gallery/snapshots/` (each `index.json`'s keys; a snapshot without one is
  counted, since what it holds cannot be told);
- the unknown-face store: faces left in the clusters that were named PERSON (and those merged
  into them), in the table and in its snapshots;
- `work/segments/` partials that name PERSON (names and boxes, no face data);
- with `--state-dir` (the local stack's; `.lambdaface` by default when the endpoint is local):
  `state.json`'s objects under `models/PERSON/`, its table items with PERSON's embeddings and
  its snapshot blobs listing PERSON's keys, and lines of `logs/` naming PERSON.

Face copies (a photo, an embedding) are what the receipt is about: exit 1 when any is left.
Mentions (a name in a partial or a log line) are printed and do not change the exit status.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from lambdaface import watch
from lambdaface.endpoint import configure
from shared.pipeline.keys import WORK_PREFIX, person_prefix

GALLERY_LOCAL, UNKNOWNS_LOCAL = "lambdaface-GalleryTable", "lambdaface-UnknownsTable"  # the local stack's names
SNAPSHOTS, UNKNOWN_SNAPSHOTS = "gallery/snapshots/", "unknowns/snapshots/"
LOCAL_STATE = Path(".lambdaface")  # `lambdaface local`'s default --state-dir


@dataclass(frozen=True)
class Finding:
    """One trace of PERSON: where, what, and whether it is a copy of a face (photo or embedding)."""

    place: str
    what: str
    face: bool = True

    def line(self) -> str:
        return f"{'LEFT ' if self.face else 'note '} {self.place}: {self.what}"


def audit(bucket: str, person: str, gallery_table: str, unknowns_table: str | None = None,
          state_dir: Path | None = None) -> list[Finding]:
    """Every trace of `person` in the bucket, the tables and (if given) the local state folder."""
    from shared.aws.clients import client

    s3, db = client("s3"), client("dynamodb")
    prefix = person_prefix(person)
    searches: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("models", lambda: [Finding("models", f"{key} (photo)") for key in _keys(s3, bucket, prefix)]),
        ("gallery", lambda: [Finding("gallery", f"face item {item['image_key']['S']}")
                             for item in _query(db, gallery_table, person, "image_key")]),
        ("change log", lambda: [
            Finding("change log", f"entry {item['image_key']['S']} holds the vector of {item['face_key']['S']}")
            for item in _query(db, gallery_table, "#log", "image_key, face_key, face_person",
                               "face_person = :who AND attribute_exists(vector)", person)]),
        ("snapshot", lambda: _snapshots(s3, bucket, SNAPSHOTS,
                                        lambda folder, index: [k for k in index.get("keys") or [] if k.startswith(prefix)])),
        ("work", lambda: [Finding("work", f"{key} names {person} (boxes and names, no face data)", face=False)
                          for key in _keys(s3, bucket, WORK_PREFIX)
                          if key.endswith(".json") and _names(_json(s3, bucket, key), person)]),
    ]
    if unknowns_table:
        searches.append(("unknowns", lambda: _unknowns(s3, db, bucket, unknowns_table, person)))
    if state_dir is not None:
        searches.append(("state", lambda: _state(state_dir, person)))
    found: list[Finding] = []
    for place, search in searches:
        try:
            found += search()
        except Exception as exc:  # a place that could not be searched cannot be called clean
            found.append(Finding(place, f"could not be searched: {type(exc).__name__}: {exc}"))
    return found


# --- the bucket and the tables ---------------------------------------------------------------


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _json(s3: Any, bucket: str, key: str) -> Any:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception:
        return None


def _query(db: Any, table: str, partition: str, projection: str, where: str = "", who: str = "") -> Iterator[dict[str, Any]]:
    names = {"#p": "person"}
    values: dict[str, Any] = {":p": {"S": partition}}
    kwargs: dict[str, Any] = {}
    if where:
        kwargs["FilterExpression"] = where
        values[":who"] = {"S": who}
    pages = db.get_paginator("query").paginate(
        TableName=table, ConsistentRead=True, KeyConditionExpression="#p = :p", ProjectionExpression=projection,
        ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)
    for page in pages:
        yield from page.get("Items", [])


def _snapshots(s3: Any, bucket: str, root: str, matching: Any) -> list[Finding]:
    """Snapshots under `root` whose rows match (`matching(folder, index)`: the matching keys), and
    any snapshot without a readable index."""
    found = []
    folders: dict[str, set[str]] = {}
    for key in _keys(s3, bucket, root):
        folder, _, name = key[len(root):].rpartition("/")
        folders.setdefault(root + folder + "/", set()).add(name)
    for folder, names in sorted(folders.items()):
        index = _json(s3, bucket, folder + "index.json") if "index.json" in names else None
        if not isinstance(index, dict):
            if names & {"embeddings.f32", "persons.i32"}:
                found.append(Finding("snapshot", f"{folder} has no readable index.json: its rows cannot be told apart"))
            continue
        hits = matching(folder, index)
        if hits:
            found.append(Finding("snapshot", f"{folder} holds {len(hits)} row(s): {', '.join(hits[:5])}"))
    return found


def _unknowns(s3: Any, db: Any, bucket: str, table: str, person: str) -> list[Finding]:
    """Faces left in the unknown clusters that were named `person` (the `name` command moves them
    to models/PERSON/ and forgets the cluster)."""
    from shared.aws.unknowns_table import NAMED, UnknownStore
    from shared.pipeline import unknowns

    store = UnknownStore(table, bucket)
    named = [r["image_key"] for r in store.records(NAMED) if r.get("name") == person]
    if not named:
        return []
    aliases = store.aliases()
    clusters = set().union(*(unknowns.members(store, store.resolve(c, aliases), aliases) for c in named))
    found = [Finding("unknowns", f"face {f.face_id} of cluster {f.cluster} (named {person})")
             for c in sorted(clusters) for f in store.cluster_faces(c)]

    def rows_of_clusters(folder: str, index: dict[str, Any]) -> list[str]:
        import numpy as np

        names, keys = list(index.get("names") or []), list(index.get("keys") or [])
        if not any(c in names for c in clusters):
            return []
        data = s3.get_object(Bucket=bucket, Key=folder + "persons.i32")["Body"].read()
        ids = np.frombuffer(data, dtype="<i4")
        return [key for key, i in zip(keys, ids) if 0 <= i < len(names) and names[i] in clusters]

    return found + _snapshots(s3, bucket, UNKNOWN_SNAPSHOTS, rows_of_clusters)


def _names(document: Any, person: str) -> bool:
    """Whether a partial's frames name `person`."""
    if not isinstance(document, dict):
        return False
    return any(face.get("person") == person for frame in document.get("frames") or [] if isinstance(frame, dict)
               for face in frame.get("faces") or [] if isinstance(face, dict))


# --- the local stack's state folder ----------------------------------------------------------


def _state(state_dir: Path, person: str) -> list[Finding]:
    """What `lambdaface local` saved (state.json, blobs/) and logged (logs/) about `person`."""
    found: list[Finding] = []
    prefix = person_prefix(person)
    manifest_path = state_dir / "state.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for obj in manifest.get("objects", []):
            blob = state_dir / "blobs" / str(obj.get("blob"))
            if str(obj.get("key", "")).startswith(prefix) and blob.exists():
                found.append(Finding("state", f"state.json: {obj['key']} (photo in blobs/{blob.name})"))
            elif str(obj.get("key", "")).startswith(SNAPSHOTS) and str(obj["key"]).endswith("index.json") and blob.exists():
                try:
                    keys = [k for k in json.loads(blob.read_bytes()).get("keys", []) if k.startswith(prefix)]
                except ValueError:
                    keys = []
                if keys:
                    found.append(Finding("state", f"state.json: snapshot {obj['key']} lists {len(keys)} of {person}'s faces"))
        for table, items in (manifest.get("items") or {}).items():
            for item in items:
                who = item.get("person", {}).get("S", "")
                if who == person and "embedding" in item:
                    found.append(Finding("state", f"state.json: {table} face item {item['image_key']['S']}"))
                elif who.startswith("#log") and item.get("face_person", {}).get("S") == person and "vector" in item:
                    found.append(Finding("state", f"state.json: {table} change-log vector of {item['face_key']['S']}"))
    logs = state_dir / "logs"
    for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
        with open(log, errors="replace") as handle:
            count = sum(1 for line in handle if prefix in line)
        if count:
            found.append(Finding("state", f"logs/{log.name}: {count} line(s) name {prefix} (names, no face data)", face=False))
    return found


# --- command line ------------------------------------------------------------------------------


def _is_local(endpoint: str | None) -> bool:
    """Is `endpoint` a loopback address (the local stack's)? Its host, not a substring of the URL."""
    from urllib.parse import urlsplit

    from lambdaface.local.guard import is_loopback

    host = urlsplit(str(endpoint)).hostname if endpoint else None
    return bool(host) and is_loopback(host)


def add_table_args(p: argparse.ArgumentParser) -> None:
    """--gallery-table and --unknowns-table (the environment's, else the local stack's names)."""
    p.add_argument("--gallery-table", default=os.environ.get("GALLERY_TABLE") or GALLERY_LOCAL,
                   help="the gallery table (default: $GALLERY_TABLE, else the local stack's)")
    p.add_argument("--unknowns-table", default=os.environ.get("UNKNOWNS_TABLE") or UNKNOWNS_LOCAL,
                   help="the unknown-face table (default: $UNKNOWNS_TABLE, else the local stack's)")


def state_dir_of(args: argparse.Namespace) -> Path | None:
    """The local stack's state folder to look in: --state-dir, else `.lambdaface` for a local endpoint."""
    if args.state_dir:
        return Path(args.state_dir)
    return LOCAL_STATE if _is_local(args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")) and LOCAL_STATE.is_dir() else None


def receipt(args: argparse.Namespace, person: str, stream: Any = None) -> int:
    """Print the receipt for `person`; 1 when a copy of a face is left, else 0."""
    stream = stream or sys.stdout
    found = audit(args.bucket, person, args.gallery_table, args.unknowns_table, state_dir_of(args))
    for finding in found:
        print(finding.line(), file=stream, flush=True)
    left = [f for f in found if f.face]
    places = "models/, gallery items, change log, gallery/snapshots/, unknown-face store, work/"
    places += f", state folder {state_dir_of(args)}" if state_dir_of(args) else ""
    if left:
        print(f"receipt for {person}: {len(left)} copies of a face left ({places} searched)", file=stream, flush=True)
        return 1
    print(f"receipt for {person}: no copy of a face left ({places} searched)", file=stream, flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    configure(args)
    return receipt(args, args.person)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `audit` subcommand."""
    p = subparsers.add_parser("audit", help="list every stored trace of PERSON; exit 1 if a copy of a face is left")
    p.add_argument("person")
    watch.add_connection_args(p)
    add_table_args(p)
    p.add_argument("--state-dir", default=None,
                   help="the local stack's state folder to search too (default: .lambdaface when the endpoint is local)")
    p.set_defaults(func=main)
