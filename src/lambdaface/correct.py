"""`lambdaface correct` and `lambdaface corrections`: decisions about faces that stay made.

    lambdaface correct queries/party.jpg --face 2 --not obama       # not obama: its next candidate, or none
    lambdaface correct queries/party.jpg --face 1 --is alice --enroll   # alice; her crop enrolled too
    lambdaface correct queries/party.jpg --face 3 --not-a-face      # removed from the result
    lambdaface correct queries/party.jpg --face 2 --not u-0a3b4c5d6e7f8091   # out of that unknown cluster
    lambdaface correct queries/clip.mp4 --at 4.5 --face 1 --is bob  # a video: the frame at 4.5 s
    lambdaface corrections [--person P] [--json]                    # the records
    lambdaface corrections undo ID                                  # remove one; the engine's answer is back

A face added by its box (`lambdaface add-face`) is a record too (decision `added`): listed here,
and undoing it removes the face from the result and the index.

Faces count from 1, in the order of the result's `faces` (a video: of the frame's `faces`). A
record is kept by the source's content (ETag) and the face's box, so every later recognition of
the same bytes, at any key, comes out corrected (shared/pipeline/corrections.py).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from lambdaface import tables, watch
from lambdaface.endpoint import configure

LOCAL_TABLE, TABLE_ENV = "lambdaface-CorrectionsTable", "CORRECTIONS_TABLE"
INDEX_LOCAL, INDEX_ENV = "lambdaface-PeopleIndexTable", "PEOPLE_INDEX_TABLE"
UNKNOWNS_LOCAL, UNKNOWNS_ENV = "lambdaface-UnknownsTable", "UNKNOWNS_TABLE"
GALLERY_LOCAL, GALLERY_ENV = "lambdaface-GalleryTable", "GALLERY_TABLE"


def _config(args: argparse.Namespace) -> Any:
    """The settings with the tables the arguments name (the person index left out, with a warning,
    when that table does not exist)."""
    from shared.config import current_config

    config = current_config()
    return replace(config, pipeline=replace(config.pipeline, corrections_table=args.table,
                                            people_index_table=tables.person_index(args.index_table),
                                            unknowns_table=args.unknowns_table, gallery_table=args.gallery_table))


def _store(args: argparse.Namespace) -> Any:
    from shared.aws.unknowns_table import UnknownStore

    return UnknownStore(args.unknowns_table, args.bucket)


def _source(args: argparse.Namespace) -> str:
    """The source key: as given, or under queries/ when only that one has a result."""
    from shared.aws import s3
    from shared.pipeline.keys import result_key

    key = args.key
    if not key.startswith("queries/") and s3.stat(args.bucket, result_key(key)) is None:
        if s3.stat(args.bucket, result_key(f"queries/{key}")) is not None:
            return f"queries/{key}"
    return key


def correct(args: argparse.Namespace) -> int:
    """Record one decision about face N and rewrite the result and the index."""
    from shared.engine import corrections as engine
    from shared.pipeline import corrections

    decision, name = ((engine.IS, args.is_) if args.is_ else (engine.NOT, args.not_) if args.not_
                      else (engine.NOT_A_FACE, None))
    if args.enroll and decision != engine.IS:
        raise corrections.CorrectionError("--enroll goes with --is PERSON")
    if name is not None:
        corrections.check_name(name)
    configure(args)
    config = _config(args)
    source = _source(args)
    if args.enroll:
        _enroll(args, config, source, name or "")
    store = _store(args) if decision == engine.NOT and name and name.startswith("u-") else None
    record = corrections.correct(config, args.bucket, source, args.face, decision, name, args.at, store=store)
    what = engine.NOT_A_FACE if decision == engine.NOT_A_FACE else f"{decision} {name}"
    print(f"corrected face {args.face} of {source}: {what} (correction {record['id']})")
    return 0


def _enroll(args: argparse.Namespace, config: Any, source: str, person: str) -> None:
    """Write the face's crop under models/PERSON/ and wait for its enrollment (as `name` does)."""
    from lambdaface.client import upload_bytes, wait_for_jobs
    from lambdaface.unknowns import face_crop
    from shared.pipeline import corrections
    from shared.pipeline.keys import person_prefix

    doc = corrections._result(args.bucket, source)
    faces, t = corrections._frame_faces(doc, args.at)
    if not 1 <= args.face <= len(faces):
        raise corrections.CorrectionError(f"{source} has {len(faces)} face(s): --face counts from 1 to {len(faces)}, not {args.face}")
    box = faces[args.face - 1]["box"]
    face = SimpleNamespace(source=source, etag=doc["source_etag"], box=box, t=t)
    s3 = watch.s3_client(args)
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    key = f"{person_prefix(person)}corrected-{stem}-{box['left']}-{box['top']}.jpg"
    sent = [upload_bytes(s3, args.bucket, face_crop(args.bucket, face), key, "enroll")]
    found = wait_for_jobs(SimpleNamespace(**{**vars(args), "json": False}), s3, sent)[1]
    if not (found.get(key) or {}).get("status") == watch.SUCCEEDED:
        s3.delete_object(Bucket=args.bucket, Key=key)
        raise corrections.CorrectionError(f"the crop of face {args.face} could not be enrolled as {person}; nothing was corrected")


def _line(record: dict[str, Any]) -> str:
    if record["decision"] == "added":  # a face added by its box (add-face), named or not
        what = "added" + (f", is {record['person']}" if record.get("person") else "")
    elif record["decision"] == "not_a_face":
        what = record["decision"]
    else:
        what = f"{record['decision']} {record.get('person') or record.get('cluster')}"
    box = record["box"]
    at = "" if record.get("t") is None else f" at {record['t']:g} s"
    return (f"{record['id']}  {record.get('made_at', '')}  {record.get('source', '')}{at}  box {box['left']},{box['top']} "
            f"{box['width']}x{box['height']}  {what}")


def list_corrections(args: argparse.Namespace) -> int:
    """Every record, or those naming --person."""
    from shared.pipeline import corrections

    if args.undo_word and not args.undo:
        raise corrections.CorrectionError("corrections undo: give the record's ID (see `lambdaface corrections`)")
    configure(args)
    config = _config(args)
    if args.undo:
        record = corrections.undo(config, args.bucket, args.undo, store=_store(args))
        print(f"undid {_line(record)}")
        return 0
    found = corrections.listing(config, args.person)
    for record in found:
        print(json.dumps({k: v for k, v in record.items() if k not in ("pk", "sk")}) if args.json else _line(record))
    if not found and not args.json:
        print("no corrections" + (f" naming {args.person}" if args.person else ""))
    return 0


def _run(command: Any) -> Any:
    """`command` with its failures as one line each, exit 1."""
    from shared.pipeline.corrections import CorrectionError

    return tables.one_line_failures(command, (CorrectionError,), lambda args: (
        f" (is {args.table!r} the stack's CorrectionsTableName output? pass --table or set {TABLE_ENV})"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `correct` and `corrections`."""

    def common(p: argparse.ArgumentParser) -> None:
        watch.add_connection_args(p)
        p.add_argument("--table", default=os.environ.get(TABLE_ENV) or LOCAL_TABLE,
                       help=f"the corrections table (default: ${TABLE_ENV}, else the local stack's {LOCAL_TABLE})")
        p.add_argument("--index-table", default=os.environ.get(INDEX_ENV) or INDEX_LOCAL,
                       help=f"the person index, kept in step (default: ${INDEX_ENV}, else {INDEX_LOCAL})")
        p.add_argument("--unknowns-table", default=os.environ.get(UNKNOWNS_ENV) or UNKNOWNS_LOCAL,
                       help=f"the unknown-face table (default: ${UNKNOWNS_ENV}, else {UNKNOWNS_LOCAL})")
        p.add_argument("--gallery-table", default=os.environ.get(GALLERY_ENV) or GALLERY_LOCAL,
                       help=f"the gallery table, read when the index is kept in step (default: ${GALLERY_ENV}, else {GALLERY_LOCAL})")

    p = subparsers.add_parser("correct", help="correct one face of a result: --is PERSON, --not PERSON/CLUSTER, --not-a-face")
    p.add_argument("key", metavar="KEY", help="the source's key, e.g. queries/party.jpg")
    p.add_argument("--face", type=int, required=True, metavar="N", help="the face, counted from 1 in the result's faces")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS", help="a video: the sampled frame at this time")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--is", dest="is_", metavar="PERSON", help="the face is PERSON")
    which.add_argument("--not", dest="not_", metavar="PERSON_OR_CLUSTER", help="the face is not PERSON (or not in that cluster)")
    which.add_argument("--not-a-face", action="store_true", help="it is not a face: removed from the result")
    p.add_argument("--enroll", action="store_true", help="with --is: also enroll the face's crop under models/PERSON/")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for --enroll's enrollment")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    p.set_defaults(no_wait=False, json=False)
    common(p)
    p.set_defaults(func=_run(correct))

    p = subparsers.add_parser("corrections", help="list the correction records; `corrections undo ID` removes one")
    p.add_argument("undo_word", nargs="?", choices=["undo"], metavar="undo", help="undo ID: remove one record")
    p.add_argument("undo", nargs="?", metavar="ID", help="the record to undo")
    p.add_argument("--person", help="only the records naming PERSON (or a cluster id)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    common(p)
    p.set_defaults(func=_run(list_corrections))
