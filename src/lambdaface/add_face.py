"""`lambdaface add-face KEY --box LEFT,TOP,WIDTH,HEIGHT [--is PERSON]`: a face the detector missed.

The face at the box (pixels of the original photo) is embedded, matched against the gallery (or
named PERSON), and added to KEY's result with `"added": true`, and to the person index. It is kept
as a correction record (decision `added`) of the photo's bytes, so every recognition of the same
bytes, at any key, has it again; `lambdaface corrections` lists it and `corrections undo ID`
removes it (shared/pipeline/added_faces.py). The command reads and writes the bucket, the gallery
table, the corrections table and the person index directly, as `correct` does. Bad input (an
unknown key, a malformed box or one outside the image, an invalid name) is one line, exit 1, and
changes nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from lambdaface import client, tables, watch
from lambdaface.endpoint import configure
from shared import errors

GALLERY_LOCAL, INDEX_LOCAL = "lambdaface-GalleryTable", "lambdaface-PeopleIndexTable"  # the local stack's names
CORRECTIONS_LOCAL = "lambdaface-CorrectionsTable"


def add_face(args: argparse.Namespace) -> int:
    """Add the face at --box to KEY's result; print it."""
    from botocore.exceptions import BotoCoreError, ClientError

    from shared.config import current_config
    from shared.pipeline import added_faces
    from shared.pipeline.keys import source_of

    try:
        box = added_faces.parse_box(args.box)
        if args.person is not None:
            added_faces.check_person(args.person)
        configure(args)
        config = current_config()
        config = dataclasses.replace(config, pipeline=dataclasses.replace(
            config.pipeline, gallery_table=args.gallery_table, people_index_table=tables.person_index(args.index_table),
            corrections_table=args.corrections_table))
        key = source_of(args.key)
        doc, number = added_faces.add_face(config, args.bucket, key, box, args.person)
    except errors.FaceError as exc:
        print(f"lambdaface: {exc.message}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        if client.refusal_message(exc):
            raise  # the command line's own one-line explanation of refused keys
        missing = exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException" if isinstance(exc, ClientError) else False
        hint = (f" (are {args.gallery_table!r} and {args.corrections_table!r} the stack's gallery and corrections tables? "
                "pass --gallery-table and --corrections-table)") if missing else ""
        print(f"lambdaface: {exc}{hint}", file=sys.stderr)
        return 1
    face = doc["faces"][number - 1]
    if args.json:
        print(json.dumps({"source": key, "face": number, **face}))
        return 0
    who = face["person"] or "unknown"
    distance = "" if face.get("distance") is None else f" (distance {face['distance']:.3f})"
    how = "named" if face.get("named") else "matched"
    print(f"{key}: face {number} added, {how} {who}{distance}" + ("; in the review band" if face.get("review") else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `add-face` subcommand."""
    p = subparsers.add_parser("add-face", help="add a face the detector missed to a photo's result, by its box")
    p.add_argument("key", metavar="KEY", help="the photo's key (queries/...), as in its result")
    p.add_argument("--box", required=True, metavar="LEFT,TOP,WIDTH,HEIGHT", help="the face, in pixels of the original photo")
    p.add_argument("--is", dest="person", metavar="PERSON", help="name the face PERSON instead of matching it")
    p.add_argument("--json", action="store_true", help="print the added face as JSON")
    watch.add_connection_args(p)
    p.add_argument("--gallery-table", default=os.environ.get("GALLERY_TABLE") or GALLERY_LOCAL,
                   help=f"the gallery table (default: $GALLERY_TABLE, else the local stack's {GALLERY_LOCAL})")
    p.add_argument("--index-table", default=os.environ.get("PEOPLE_INDEX_TABLE") or INDEX_LOCAL,
                   help=f"the person index, kept in step (default: $PEOPLE_INDEX_TABLE, else the local stack's {INDEX_LOCAL})")
    p.add_argument("--corrections-table", default=os.environ.get("CORRECTIONS_TABLE") or CORRECTIONS_LOCAL,
                   help=f"the corrections table, where the added face is kept (default: $CORRECTIONS_TABLE, else {CORRECTIONS_LOCAL})")
    p.set_defaults(func=add_face)
