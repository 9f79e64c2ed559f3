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
        "handlers in worker processes that poll the queues as Lambda does. Stop with Ctrl-C. "
        "It listens on loopback only unless --allow-remote, which requires every request signed "
        "(AWS SigV4) with the stack's keys.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on: a loopback one (127.0.0.1, ::1, localhost) unless --allow-remote "
                   "(default: %(default)s)")
    p.add_argument("--allow-remote", action="store_true",
                   help="remote mode: allow any --host (e.g. 0.0.0.0) and refuse (403) every request not signed "
                   "with the stack's keys: from --keys-file, else $LAMBDAFACE_LOCAL_ACCESS_KEY_ID and "
                   "$LAMBDAFACE_LOCAL_SECRET_ACCESS_KEY, else STATE_DIR/credentials (generated and printed once)")
    p.add_argument("--keys-file", type=Path, default=None, metavar="PATH",
                   help="remote mode: the stack's keys, an AWS credentials file ([default] section)")
    p.add_argument("--host-name", action="append", default=[], metavar="NAME",
                   help="another name clients reach the stack by (a Host header it answers; repeatable)")
    p.add_argument("--webhook", default=None, metavar="URL",
                   help="POST each job's event (JSON) to this loopback URL (http://127.0.0.1:PORT/...), a few tries each")
    p.add_argument("--port", type=int, default=4566, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes per function (each function's concurrency), 0 for none: "
                   "messages wait in the queues for `lambdaface invoke` (default: the number of cores)")
    p.add_argument("--api-workers", type=int, default=None, metavar="N",
                   help="worker processes of the synchronous API (POST /recognize, /compare on the stack's address; "
                   "each keeps the models and the gallery warm), 0 for none (default: --workers)")
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
    from lambdaface.local.keys import KeysError
    from lambdaface.local.spec import TemplateError, stack_spec
    from lambdaface.local.stack import LocalStack, Options, check_host
    from lambdaface.template import TEMPLATE, load_template

    refused = check_host(args.host, args.allow_remote)
    if refused:
        print(f"lambdaface local: {refused}", file=sys.stderr)
        return 2
    if args.keys_file is not None and not args.allow_remote:
        print("lambdaface local: --keys-file needs --allow-remote (on loopback no keys are checked)", file=sys.stderr)
        return 2

    from lambdaface.local.event_log import webhook_refusal

    webhook_why = webhook_refusal(args.webhook) if args.webhook else None
    if webhook_why:
        print(f"lambdaface local: {webhook_why}", file=sys.stderr)
        return 2
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
        allow_remote=args.allow_remote,
        keys_file=args.keys_file,
        host_names=tuple(args.host_name),
        webhook=args.webhook,
        api_workers=args.api_workers,
    )
    stack = LocalStack(spec, options)
    try:
        stack.start()
    except (OSError, KeysError) as exc:  # the port is taken, the state directory is not writable, ...
        print(f"lambdaface local: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        stack.run()
    finally:
        stack.stop()
    return 0
