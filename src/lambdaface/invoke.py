"""`lambdaface invoke FUNCTION -e EVENT.json`: `sam local invoke` without Docker.

Runs the function's handler in this process, with the environment the template gives it, against
the local stack (or any endpoint), and prints the handler's response as JSON on stdout; logs go
to stderr. A scheduled function (UnknownsSweepFunction) needs no event file: without one it gets
the Scheduled Event EventBridge would send.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"


def find_function(functions: dict[str, Any], name: str) -> Any:
    """A function by logical id (EnrollFunction) or short name (enroll), case-insensitive."""
    for lid, fn in functions.items():
        if name.lower() in (lid.lower(), lid.lower().removesuffix("function"), fn.name.lower()):
            return fn
    raise SystemExit(f"lambdaface invoke: no function {name!r}; the template has {', '.join(functions)}")


def with_bucket(event: dict[str, Any], bucket: str) -> dict[str, Any]:
    """`event` with every S3 record inside its SQS bodies pointing at `bucket`."""
    out = json.loads(json.dumps(event))
    for record in out.get("Records", []):
        try:
            body = json.loads(record["body"])
        except (KeyError, TypeError, ValueError):
            continue
        if not isinstance(body, dict):
            continue
        for s3_record in body.get("Records", []):
            if isinstance(s3_record, dict) and "s3" in s3_record:
                s3_record["s3"]["bucket"] = {**s3_record["s3"].get("bucket", {}), "name": bucket, "arn": f"arn:aws:s3:::{bucket}"}
        if body.get("Bucket"):  # s3:TestEvent
            body["Bucket"] = bucket
        record["body"] = json.dumps(body)
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `invoke` subcommand."""
    from lambdaface.local.command import add_parameter_args, add_stack_args

    p = subparsers.add_parser(
        "invoke",
        help="run a function's handler once on an event file, against the local stack",
        description="Like `sam local invoke`, without Docker: the handler runs here with the "
        "template's environment. Exit 0 when it returned with no batchItemFailures.",
    )
    p.add_argument("function", help="logical id (EnrollFunction) or short name (enroll)")
    p.add_argument("-e", "--event", default=None,
                   help="event JSON file, - for stdin (see events/); a scheduled function's default: "
                   "a Scheduled Event")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT,
                   help="the local stack (default: $AWS_ENDPOINT_URL or %(default)s)")
    add_stack_args(p, "point the event's S3 records at this bucket, '' to leave them; the stack's bucket")
    add_parameter_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from lambdaface.local import keys
    from lambdaface.local.command import parameters
    from lambdaface.local.spec import TemplateError, stack_spec
    from lambdaface.local.stack import function_env
    from lambdaface.local.workers import LambdaContext, apply_env, load_handler, scheduled_event
    from lambdaface.template import TEMPLATE, load_template

    try:
        spec = stack_spec(load_template(args.template or TEMPLATE), region=args.region,
                          bucket=args.bucket or None, parameters=parameters(args))
    except TemplateError as exc:
        print(f"lambdaface invoke: {exc}", file=sys.stderr)
        return 2
    fn = find_function({**spec.functions, **spec.scheduled}, args.function)
    if args.event is not None:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
        event = json.loads(text)
    elif fn.logical_id in spec.scheduled:
        event = scheduled_event(spec.scheduled[fn.logical_id], args.region)
    else:
        print(f"lambdaface invoke: {fn.logical_id} needs an event: -e FILE (see events/)", file=sys.stderr)
        return 2
    if args.bucket:
        event = with_bucket(event, args.bucket)
    apply_env(function_env(fn, args.endpoint_url, args.region, keys.of_client(os.environ)))  # remote mode: the stack's keys
    context = LambdaContext(fn.name, fn.memory_mb, fn.timeout_s, args.region)
    with contextlib.redirect_stdout(sys.stderr):  # logs to stderr, the response alone on stdout
        try:
            handler = load_handler(fn.handler)
            response = handler(event, context)
        except Exception:
            traceback.print_exc()
            return 1
    print(json.dumps(response, indent=2, default=str))
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    return 1 if failures else 0
