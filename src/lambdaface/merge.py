"""`lambdaface merge FROM INTO` and `lambdaface rename OLD NEW`: one person's images, gallery faces and
person-index entries become another's.

The steps, each safe to run again (re-running an interrupted merge finishes it):
1. mark FROM as being merged into INTO (in the person index), and arm the mark just before the
   first copy: from then on the forget of FROM's last face moves FROM's entries to INTO instead of
   deleting them, so a recognition that names FROM while the merge runs is not lost (a `forget FROM`
   that deletes FROM's images before any is copied still deletes FROM's entries);
2. copy each image under models/FROM/ to models/INTO/ (never over an image of INTO: a clashing name
   gets a suffix; a copy already made is found by its bytes) and wait for their enrollment;
3. move FROM's records to INTO (shared/pipeline/person_merge.py), delete FROM's images and wait for
   their forgetting; repeat 2-3 while images keep arriving under models/FROM/;
4. move what a late recognition wrote under FROM, and remove the mark; with `--rerun`, recognize
   again the sources where FROM appeared (those whose entries this run moved), so that their
   results name INTO too.
`rename OLD NEW` is a merge into a name with no images (refused when NEW has some: merge then).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from typing import Any, Callable

from lambdaface import watch
from lambdaface.client import FORGET_TIMEOUT_S, _server_time, model_keys, refusal_message, wait_for_jobs
from lambdaface.endpoint import configure
from lambdaface.unknowns import INDEX_ENV, INDEX_LOCAL, CommandError, _pipeline, rerun
from lambdaface.watch import Expectation
from shared.config import current_config
from shared.engine.clustering import is_cluster_id
from shared.pipeline import people_index, person_merge
from shared.pipeline.keys import PERSON_PATTERN, person_prefix, result_key, shorten

ROUNDS = 5  # copy-and-delete rounds while new images keep arriving under models/FROM/


def _check_names(from_name: str, into: str) -> None:
    for person in (from_name, into):
        if not PERSON_PATTERN.fullmatch(person) or ".." in person:
            raise CommandError(f"{shorten(person)!r} is not a valid person name: 1-64 letters, digits, '_', '-' or '.', "
                               "without '..'")
    if from_name == into:
        raise CommandError(f"cannot merge {from_name} into itself")
    for name in (from_name, into):
        if is_cluster_id(name):
            raise CommandError(f"{name} is an unknown cluster, not a person: `lambdaface name {name} PERSON` names it")


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if watch._missing(exc):
            return None
        raise


def copy_image(s3: Any, bucket: str, key: str, from_name: str, into: str,
               arm: Callable[[], None]) -> tuple[str, Expectation] | None:
    """Copy FROM's image `key` under models/INTO/ (see person_merge.copy_names), calling `arm()`
    first when there is something to copy (or copied by an earlier run): the ETag copied and
    what its enrollment result must look like, or None when the image is gone (forgotten meanwhile)
    or was replaced while being copied (the next round copies the new one)."""
    source = _head(s3, bucket, key)
    if source is None:
        return None
    etag = source["ETag"]
    for name in person_merge.copy_names(key.rsplit("/", 1)[1], from_name):
        target = f"{person_prefix(into)}{name}"
        there = _head(s3, bucket, target)
        if there is not None and there["ETag"] == etag:
            arm()
            return etag, watch.current_expectation(s3, bucket, target)  # copied by an earlier run
        if there is not None:
            continue  # INTO's own image of that name: never overwritten
        arm()
        previous = watch.read_json(s3, bucket, result_key(target))
        sent = time.time()
        try:  # only FROM's bytes as read, and (on AWS: moto ignores IfNoneMatch here) never over a new upload
            response = s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key},
                                      CopySourceIfMatch=etag, IfNoneMatch="*")
        except Exception as exc:
            if _code(exc) == "ConditionalRequestConflict" or (_code(exc) == "PreconditionFailed" and _head(s3, bucket, target)):
                continue  # INTO's image appeared at that name meanwhile: the next name
            if watch._missing(exc) or _code(exc) == "PreconditionFailed":
                return None  # FROM's image gone or replaced: the next round copies what is there
            raise
        return etag, Expectation(target, not_job_id=(previous or {}).get("job_id"), not_before=_server_time(response),
                           etag=response["CopyObjectResult"]["ETag"].strip('"'), kind="enroll", sent_at=sent)
    raise AssertionError("copy_names never ends")


def _code(exc: Exception) -> str | None:
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")


def delete_if_unchanged(s3: Any, bucket: str, key: str, etag: str) -> Expectation | None:
    """Delete FROM's image `key` if it still holds the bytes copied (S3's conditional delete); what
    its forget result must look like, or None when it was replaced since (the next round copies it)
    or is gone."""
    previous = watch.read_json(s3, bucket, result_key(key))
    sent = time.time()
    try:
        response = s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except Exception as exc:
        if watch._missing(exc) or _code(exc) == "PreconditionFailed":
            return None
        raise
    return Expectation(key, not_job_id=(previous or {}).get("job_id"), not_before=_server_time(response), kind="forget",
                       sent_at=sent)


def merge_person(args: argparse.Namespace, from_name: str, into: str, rename: bool = False) -> int:
    """Merge FROM into INTO (see the module's docstring); 0 when done."""
    _check_names(from_name, into)
    configure(args)
    s3 = watch.s3_client(args)
    pipeline = _pipeline(args)
    config = replace(current_config(), pipeline=pipeline)
    onward = people_index.merge_mark(pipeline, into)
    if onward:
        raise CommandError(f"{into} is itself being merged into {onward['into']}: finish that merge first")
    resuming = (people_index.merge_mark(pipeline, from_name) or {}).get("into")
    if resuming not in (None, into):
        raise CommandError(f"{from_name} is being merged into {resuming}: re-run `lambdaface merge {from_name} {resuming}`")
    keys = model_keys(s3, args.bucket, from_name)
    if not keys and resuming is None and not people_index.has_entries(pipeline, from_name):
        raise CommandError(f"no images under {person_prefix(from_name)}: {from_name} is not enrolled")
    if rename and resuming is None and model_keys(s3, args.bucket, into):
        raise CommandError(f"{into} already has images under {person_prefix(into)}: "
                           f"`lambdaface merge {from_name} {into}` joins the two")
    if not people_index.begin_merge(pipeline, from_name, into):
        raise CommandError(f"{from_name} is being merged into someone else meanwhile")
    copied = deleted = moved = 0
    armed: list[bool] = []

    def arm() -> None:  # before the first copy: from then on, the forget of FROM's last face hands their entries to INTO
        if not armed and not people_index.begin_merge(pipeline, from_name, into, armed=True):
            raise CommandError(f"{from_name} is being merged into someone else meanwhile")
        armed.append(True)

    sources: set[str] = set()  # where FROM appeared: recognized again with --rerun
    for _ in range(ROUNDS):
        keys = model_keys(s3, args.bucket, from_name)
        if not keys:
            break
        copies = {k: c for k, c in ((k, copy_image(s3, args.bucket, k, from_name, into, arm)) for k in keys) if c}
        code = wait_for_jobs(args, s3, [e for _, e in copies.values()])[0] if copies else 0
        if code == watch.EXIT_TIMEOUT:
            return _interrupted(from_name, into, code)
        copied += len(copies)
        sources |= people_index.sources_of(pipeline, from_name)
        moved += person_merge.move_records(config, from_name, into)
        gone = [e for e in (delete_if_unchanged(s3, args.bucket, k, etag) for k, (etag, _) in copies.items()) if e]
        args.timeout, timeout = max(args.timeout, FORGET_TIMEOUT_S), args.timeout
        try:
            code = wait_for_jobs(args, s3, gone)[0] if gone else 0
        finally:
            args.timeout = timeout
        if code == watch.EXIT_TIMEOUT:
            return _interrupted(from_name, into, code)
        deleted += len(gone)
    else:
        raise CommandError(f"images keep arriving under {person_prefix(from_name)}; re-run the merge when they stop")
    sources |= people_index.sources_of(pipeline, from_name)
    moved += person_merge.move_records(config, from_name, into)  # what a recognition wrote since, under FROM
    people_index.end_merge(pipeline, from_name)
    print(f"{'renamed' if rename else 'merged'} {from_name} into {into}: {copied} image(s) copied to "
          f"{person_prefix(into)}, {deleted} deleted from {person_prefix(from_name)}, {moved} record(s) moved (index entries, corrections)")
    return rerun(args, s3, sorted(sources)) if args.rerun and sources else 0


def _interrupted(from_name: str, into: str, code: int) -> int:
    print(f"lambdaface: the merge of {from_name} into {into} is not finished: run it again", file=sys.stderr)
    return code


def _run(args: argparse.Namespace, rename: bool) -> int:
    """The merge, its refusals and AWS's answers as one line each (exit 1)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return merge_person(args, args.from_name, args.into, rename)
    except (CommandError, ClientError, BotoCoreError) as exc:
        if refusal_message(exc):
            raise  # the command line explains refused keys
        print(f"lambdaface: {exc}", file=sys.stderr)
        return 1


def merge(args: argparse.Namespace) -> int:
    return _run(args, rename=False)


def rename(args: argparse.Namespace) -> int:
    return _run(args, rename=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `merge` and `rename`."""
    for name, func, help_text, from_meta, into_meta in (
        ("merge", merge, "merge FROM into INTO: FROM's images, faces and appearances become INTO's", "FROM", "INTO"),
        ("rename", rename, "rename OLD to NEW (a merge into a name with no images)", "OLD", "NEW"),
    ):
        p = subparsers.add_parser(name, help=help_text)
        p.add_argument("from_name", metavar=from_meta)
        p.add_argument("into", metavar=into_meta)
        watch.add_connection_args(p)
        p.add_argument("--index-table", default=os.environ.get(INDEX_ENV) or INDEX_LOCAL,
                       help=f"the person index, kept in step (default: ${INDEX_ENV}, else the local stack's {INDEX_LOCAL})")
        p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step (default: %(default)s)")
        p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
        p.add_argument("--json", action="store_true", help="print the result documents as JSON lines")
        p.add_argument("--rerun", action="store_true",
                       help=f"then recognize again every source where {from_meta} appeared (their results name {into_meta})")
        p.set_defaults(func=func, no_wait=False)
