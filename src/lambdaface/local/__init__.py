"""`lambdaface local`: the whole pipeline on one machine (moto's server + worker processes)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared.config import BUCKET_ENV

DEFAULT_BUCKET = "faces"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `local` subcommand."""
    p = subparsers.add_parser(
        "local",
        help="run the pipeline locally: moto's S3/SQS/DynamoDB on loopback + handler workers",
        description="Start moto's server, create the resources template.yaml declares, and run the "
        "handlers in worker processes that poll the queues as Lambda does. Stop with Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=4566, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes per function (each function's concurrency), 0 for none: "
                   "messages wait in the queues for `lambdaface invoke` (default: the number of cores)")
    add_stack_args(p, "bucket name")
    p.add_argument("--state-dir", type=Path, default=Path(".lambdaface"),
                   help="where a clean stop saves objects, items and messages (default: %(default)s)")
    p.add_argument("--visibility-timeout", type=int, default=None,
                   help="override every queue's visibility timeout, in seconds (tests)")
    p.add_argument("--function-timeout", type=int, default=None, metavar="SECONDS",
                   help="override every function's Timeout (tests)")
    p.add_argument("--autosave", type=float, default=60.0, metavar="SECONDS",
                   help="also save the state this often, 0 for never (default: %(default)s)")
    p.add_argument("--log-stderr", action="store_true",
                   help="handler logs on stderr instead of STATE_DIR/logs/<function>.log")
    p.add_argument("--handler-env", action="append", default=[], type=_name_value, metavar="NAME=VALUE",
                   help="set in every function's environment, after everything else (tests: e.g. "
                   "AWS_ENDPOINT_URL of a fault-injecting proxy; the workers still poll the server directly)")
    add_parameter_args(p)
    p.add_argument("--schedule-interval", type=_seconds, default=None, metavar="SECONDS",
                   help="run each scheduled function (e.g. UnknownsSweepFunction) this often; it always runs "
                   "once at start (the ready line waits up to 10 s for that run); 0: only then (default: the template's rate)")
    p.set_defaults(func=main)


def add_parameter_args(p: argparse.ArgumentParser) -> None:
    """--parameter NAME=VALUE and its shortcuts: template parameters (`local` and `invoke`)."""
    p.add_argument("--parameter", action="append", default=[], type=_name_value, metavar="NAME=VALUE",
                   help="a template parameter's value instead of its default (repeatable), like "
                   "`sam deploy --parameter-overrides`")
    p.add_argument("--remember-unknowns", action="store_true",
                   help="remember unknown faces so they can be grouped and named: --parameter RememberUnknowns=true")
    p.add_argument("--unknown-retention-days", type=int, default=None, metavar="DAYS",
                   help="days a remembered unknown face is kept: --parameter UnknownRetentionDays=DAYS")


def parameters(args: argparse.Namespace) -> dict[str, str]:
    """The template parameters `add_parameter_args`' options set, the shortcuts last."""
    values = dict(args.parameter)
    if args.remember_unknowns:
        values["RememberUnknowns"] = "true"
    if args.unknown_retention_days is not None:
        values["UnknownRetentionDays"] = str(args.unknown_retention_days)
    return values


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def add_stack_args(p: argparse.ArgumentParser, bucket_help: str) -> None:
    """--bucket, --template and --region: which stack (`local` and `invoke`)."""
    p.add_argument("--bucket", default=os.environ.get(BUCKET_ENV) or DEFAULT_BUCKET,
                   help=f"{bucket_help} (default: ${BUCKET_ENV} or %(default)s)")
    p.add_argument("--template", type=Path, default=None, help="SAM template (default: the project's)")
    p.add_argument("--region", default="us-east-1")


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(args: argparse.Namespace) -> int:
    """Run the local stack until SIGINT or SIGTERM; exit 0 after a clean stop."""
    from lambdaface.local.spec import TemplateError, stack_spec
    from lambdaface.local.stack import LocalStack, Options
    from lambdaface.template import TEMPLATE, load_template

    try:
        spec = stack_spec(load_template(args.template or TEMPLATE), region=args.region, bucket=args.bucket,
                          parameters=parameters(args))
    except (OSError, TemplateError) as exc:
        print(f"lambdaface local: {exc}", file=sys.stderr)
        return 2
    options = Options(
        host=args.host,
        port=args.port,
        workers=args.workers,
        state_dir=args.state_dir,
        visibility_timeout=args.visibility_timeout,
        function_timeout=args.function_timeout,
        autosave_s=args.autosave,
        log_to_stderr=args.log_stderr,
        handler_env=dict(args.handler_env),
        schedule_interval=args.schedule_interval,
    )
    stack = LocalStack(spec, options)
    try:
        stack.start()
    except OSError as exc:  # the port is taken, the state directory is not writable, ...
        print(f"lambdaface local: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        stack.run()
    finally:
        stack.stop()
    return 0
