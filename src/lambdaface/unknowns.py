"""`lambdaface unknowns` and `lambdaface name`: the remembered unknown faces, listed, shown, forgotten,
re-grouped, and named once.

`name ID PERSON` writes crops of the cluster's faces under `models/PERSON/` (so enrollment, deletion
and `forget` work exactly as for any upload), waits for their enrollment, records the naming, forgets
the cluster's faces, and lists where PERSON had appeared; `--rerun` recognizes those sources again.
These commands talk to the bucket and the unknown-face table (UNKNOWNS_TABLE) directly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lambdaface import tables, watch
from lambdaface.client import upload_bytes, wait_for_jobs
from lambdaface.endpoint import configure
from lambdaface.watch import Expectation
from shared import errors
from shared.config import current_config
from shared.pipeline.keys import parse_model_key, person_prefix, result_key

LOCAL_TABLE = "lambdaface-UnknownsTable"  # the local stack's name for it
TABLE_ENV = "UNKNOWNS_TABLE"
INDEX_LOCAL, INDEX_ENV = "lambdaface-PeopleIndexTable", "PEOPLE_INDEX_TABLE"  # the person index (lambdaface find)


class CommandError(Exception):
    """A bad request: printed as `lambdaface: <message>`, exit 1."""


def _store(args: argparse.Namespace) -> Any:
    """The unknown-face store named by the arguments (AWS, or the endpoint given)."""
    configure(args)
    from shared.aws.unknowns_table import UnknownStore

    return UnknownStore(args.table, args.bucket)


def _cluster(store: Any, text: str) -> tuple[str, set[str], list[Any]]:
    """(current id, every id that resolves to it, its faces) of the cluster named `text`."""
    from shared.engine.clustering import is_cluster_id
    from shared.pipeline import unknowns

    if not is_cluster_id(text):
        raise CommandError(f"{text!r} is not a cluster id (they look like u-0a3b4c5d6e7f8091; see `lambdaface unknowns`)")
    aliases = store.aliases()
    current = store.resolve(text, aliases)
    named = store.named(current)
    if named:
        raise CommandError(f"cluster {text} was already named {named['name']!r} on {named['named_at']}")
    ids = unknowns.members(store, current, aliases)
    faces = [f for cluster in sorted(ids) for f in store.cluster_faces(cluster)]
    if not faces:
        raise CommandError(f"no unknown faces in cluster {text} (it may have expired or been forgotten)")
    return current, ids, faces


# --- reading a face's pixels -----------------------------------------------------------------


def face_crop(bucket: str, face: Any) -> bytes:
    """A JPEG crop of `face` (with margin) from its source photo or video frame, as it was seen."""
    from shared.engine.crops import crop_face

    return crop_face(_frame(bucket, face) if face.t is not None else _photo(bucket, face), face.box)


def _photo(bucket: str, face: Any) -> Any:
    from shared.aws import s3
    from shared.engine.decode import decode_image

    with s3.open_object(bucket, face.source, if_match=face.etag or None) as (_, body):
        return decode_image(body.read(), current_config().engine)


def _frame(bucket: str, face: Any) -> Any:
    from shared.engine.video import probe_video, read_frames
    from shared.pipeline.video_copy import reading, video_view

    with reading(video_view(bucket, face.source, face.etag, None, current_config().video.read_block)) as source:
        info = probe_video(source)
        index = min(info.frames - 1, round(face.t * info.fps))
        for _, frame in read_frames(source, [index]):
            return frame
    raise CommandError(f"frame at {face.t} s of {face.source} could not be decoded")


def _crops(bucket: str, faces: list[Any], most: int) -> list[tuple[Any, bytes]]:
    """Crops of up to `most` faces, the largest first, one per source before a second from any."""
    ranked = sorted(faces, key=lambda f: -f.box.get("width", 0) * f.box.get("height", 0))
    firsts, seconds, seen = [], [], set()
    for face in ranked:
        (seconds if face.source in seen else firsts).append(face)
        seen.add(face.source)
    out = []
    for face in firsts + seconds:
        if len(out) == most:
            break
        try:
            out.append((face, face_crop(bucket, face)))
        except Exception as exc:  # the source was deleted or replaced since: that face cannot be shown
            print(f"lambdaface: skipping a face of {face.source}: {exc}", file=sys.stderr)
    return out


# --- commands ----------------------------------------------------------------------------------


def list_clusters(args: argparse.Namespace) -> int:
    """Every cluster: id, faces, sources, first and last seen."""
    from shared.pipeline import unknowns

    rows = unknowns.clusters(_store(args))
    if not rows and not args.json:
        print("no unknown faces are remembered (remembering is off unless the stack's RememberUnknowns is true)")
        return 0
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'cluster':<20} {'faces':>5} {'sources':>7}  {'first seen':<24} {'last seen':<24} example")
    for row in rows:
        print(f"{row['cluster']:<20} {row['faces']:>5} {len(row['sources']):>7}  {row['first_seen']:<24} "
              f"{row['last_seen']:<24} {row['sources'][0]}")
    return 0


def show(args: argparse.Namespace) -> int:
    """Write crops of a cluster's faces to DIR and list where each was seen."""
    store = _store(args)
    current, _, faces = _cluster(store, args.cluster)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"cluster {current}: {len(faces)} face(s)" + (f" (asked for {args.cluster})" if current != args.cluster else ""))
    for n, face in enumerate(sorted(faces, key=lambda f: (f.source, f.t or 0.0)), start=1):
        where = face.source + (f" at {face.t:.1f} s" if face.t is not None else "")
        try:
            path = out / f"{n:03d}-{Path(face.source).stem}.jpg"
            path.write_bytes(face_crop(args.bucket, face))
            print(f"{path}  {where}")
        except Exception as exc:
            print(f"(no crop: {exc})  {where}")
    return 0


def forget(args: argparse.Namespace) -> int:
    """Forget one cluster's faces, or (--all) every remembered face."""
    from shared.pipeline import unknowns

    store = _store(args)
    pipeline = _pipeline(args)
    if args.all:
        count = unknowns.forget_faces(store, pipeline, lambda f: True)[0]
        unknowns.forget_records(store)
        print(f"forgot every unknown face: {count} removed")
        return 0
    if not args.cluster:
        raise SystemExit("lambdaface unknowns forget: give a cluster id or --all")
    current, _, faces = _cluster(store, args.cluster)
    count = unknowns.forget_cluster(store, pipeline, current)
    print(f"forgot cluster {current}: {count} face(s) removed")
    return 0


def regroup(args: argparse.Namespace) -> int:
    """Re-group the clusters now (the scheduled sweep does it hourly)."""
    from shared.pipeline import unknowns

    merges = unknowns.regroup(_store(args), _pipeline(args))
    for retired, survivor in sorted(merges.items()):
        print(f"{retired} -> {survivor}")
    print(f"{len(merges)} cluster(s) merged")
    return 0


def name(args: argparse.Namespace) -> int:
    """Enroll PERSON from a cluster's faces, forget the cluster, list where PERSON appeared."""
    try:
        parse_model_key(f"{person_prefix(args.person)}x.jpg")
    except errors.FaceError as exc:
        raise CommandError(str(exc).split(": ", 1)[-1]) from None
    store = _store(args)
    current, ids, faces = _cluster(store, args.cluster)
    from shared.pipeline import corrections

    config = current_config()
    config = replace(config, pipeline=replace(_pipeline(args), corrections_table=tables.existing(args.corrections_table)))
    refused = corrections.keep_out_of_naming(config, args.bucket, store, current, args.person, faces)
    faces = [f for f in faces if f.face_id not in refused]  # a correction said these are not PERSON
    if not faces:
        raise CommandError(f"every face of cluster {current} was corrected as not {args.person}; nothing was named")
    pipeline = current_config().pipeline
    if not store.mark_named(current, args.person, pipeline.unknown_retention_days):
        raise CommandError(f"cluster {args.cluster} was named meanwhile")
    s3 = watch.s3_client(args)
    sent = [upload_bytes(s3, args.bucket, data, f"{person_prefix(args.person)}{current}-{n}.jpg", "enroll")
            for n, (_, data) in enumerate(_crops(args.bucket, faces, args.faces), start=1)]
    found = wait_for_jobs(args, s3, sent)[1] if sent else {}
    enrolled = [k for k, doc in found.items() if doc and doc.get("status") == watch.SUCCEEDED]
    for e in sent:  # a crop that could not be enrolled (no face found in it) is not kept
        if e.source not in enrolled:
            s3.delete_object(Bucket=args.bucket, Key=e.source)
    if not enrolled:
        store.unmark_named(current)
        raise CommandError(f"none of the {len(sent)} crop(s) of cluster {current} could be enrolled; nothing was named")
    from shared.pipeline import unknowns

    forgotten = unknowns.forget_faces(store, pipeline, lambda f: f.cluster in ids)[0]
    _move_index(args, ids)
    sources = sorted({f.source for f in faces})
    print(f"named {current} {args.person}: {len(enrolled)} face(s) enrolled under {person_prefix(args.person)}; "
          f"{forgotten} unknown face(s) forgotten")
    print(f"{args.person} appeared in {len(sources)} source(s):")
    for source in sources:
        times = sorted(f.t for f in faces if f.source == source and f.t is not None)
        print(f"  {source}" + (f" at {', '.join(f'{t:.1f} s' for t in times)}" if times else ""))
    return rerun(args, s3, sources) if args.rerun else 0


def _pipeline(args: argparse.Namespace) -> Any:
    """The pipeline settings, with the person index the arguments name (none, with a warning, when
    that table does not exist: a stack deployed before the index)."""
    return replace(current_config().pipeline, people_index_table=tables.person_index(args.index_table))


def _move_index(args: argparse.Namespace, ids: set[str]) -> None:
    """The person index: where the cluster was seen is now where PERSON appears."""
    from shared.pipeline import people_index

    pipeline = _pipeline(args)
    for cluster in sorted(ids):
        people_index.move(pipeline, cluster, args.person)


def rerun(args: argparse.Namespace, s3: Any, sources: list[str]) -> int:
    """Recognize `sources` again: each copied onto itself (the same bytes, a new S3 event; a managed
    copy, so videos over 5 GB too). A source deleted since is skipped."""
    sent = []
    for source in sources:
        previous = watch.read_json(s3, args.bucket, result_key(source))
        try:
            head = s3.head_object(Bucket=args.bucket, Key=source)
        except Exception as exc:
            print(f"{source}  skipped: no longer in the bucket ({exc})", file=sys.stderr)
            continue
        sent_at = time.time()
        s3.copy({"Bucket": args.bucket, "Key": source}, args.bucket, source, ExtraArgs={
            "MetadataDirective": "REPLACE", "ContentType": head.get("ContentType", "application/octet-stream"),
            "Metadata": {**head.get("Metadata", {}), "lambdaface-rerun": str(int(sent_at))}})
        etag = s3.head_object(Bucket=args.bucket, Key=source)["ETag"].strip('"')
        sent.append(Expectation(source, not_job_id=(previous or {}).get("job_id"), kind="recognize", sent_at=sent_at,
                                etag=etag))
    print(f"re-recognizing {len(sent)} source(s):")
    return wait_for_jobs(args, s3, sent)[0] if sent else 0


def _run(command: Any) -> Any:
    """`command` with its failures as one line each: a bad request, or what AWS answered."""
    return tables.one_line_failures(command, (CommandError,), lambda args: (
        f" (is {args.table!r} the stack's UnknownsTableName output? pass --table or set {TABLE_ENV})"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `unknowns` (list, show, forget, regroup) and `name`."""

    def common(p: argparse.ArgumentParser) -> None:
        watch.add_connection_args(p)
        p.add_argument("--table", default=os.environ.get(TABLE_ENV) or LOCAL_TABLE,
                       help=f"the unknown-face table (default: ${TABLE_ENV}, else the local stack's {LOCAL_TABLE})")
        p.add_argument("--json", action="store_true", help="print JSON lines")
        p.add_argument("--index-table", default=os.environ.get(INDEX_ENV) or INDEX_LOCAL,
                       help=f"the person index, kept in step (default: ${INDEX_ENV}, else the local stack's {INDEX_LOCAL})")
        p.add_argument("--corrections-table", default=os.environ.get("CORRECTIONS_TABLE") or "lambdaface-CorrectionsTable",
                       help="the correction records: a face corrected as not PERSON is never named PERSON")

    p = subparsers.add_parser("unknowns", help="list the clusters of remembered unknown faces (see `unknowns -h`)")
    common(p)
    p.set_defaults(func=_run(list_clusters))
    sub = p.add_subparsers(dest="unknowns_command", metavar="COMMAND")
    s = sub.add_parser("show", help="write crops of a cluster's faces to DIR")
    s.add_argument("cluster", metavar="ID")
    s.add_argument("--out", required=True, metavar="DIR")
    common(s)
    s.set_defaults(func=_run(show))
    s = sub.add_parser("forget", help="forget a cluster's faces, or --all of them")
    s.add_argument("cluster", metavar="ID", nargs="?")
    s.add_argument("--all", action="store_true", help="forget every remembered unknown face")
    common(s)
    s.set_defaults(func=_run(forget))
    s = sub.add_parser("regroup", help="merge look-alike clusters now (the hourly sweep does it too)")
    common(s)
    s.set_defaults(func=_run(regroup))

    p = subparsers.add_parser("name", help="enroll PERSON from an unknown cluster's faces")
    p.add_argument("cluster", metavar="ID")
    p.add_argument("person", metavar="PERSON")
    p.add_argument("--faces", type=int, default=5, help="crops to enroll at most (default: %(default)s)")
    p.add_argument("--rerun", action="store_true", help="then recognize every source PERSON appeared in again")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step (default: %(default)s)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    p.set_defaults(no_wait=False)
    common(p)
    p.set_defaults(func=_run(name))
