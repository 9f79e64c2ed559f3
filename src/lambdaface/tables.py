"""What the commands share about the DynamoDB tables they name: whether one exists (a stack
deployed before it was added has none), and their failures as one line each."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

INDEX_ENV = "PEOPLE_INDEX_TABLE"


def existing(table: str) -> str:
    """`table` when it exists, else ""."""
    from botocore.exceptions import ClientError

    from shared.aws.clients import client

    try:
        client("dynamodb").describe_table(TableName=table)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return ""
    return table


def person_index(table: str) -> str:
    """`table` when it exists, else "" with a warning: the person index is not kept in step."""
    if existing(table):
        return table
    print(f"lambdaface: no person index {table!r} (pass --index-table or set {INDEX_ENV}); it is not kept in step",
          file=sys.stderr)
    return ""


def one_line_failures(command: Callable[[argparse.Namespace], int], refusals: tuple[type[BaseException], ...],
                      missing: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    """`command` with its failures as one line each, exit 1: a refusal (bad input), or what AWS
    answered; `missing(args)` is the hint added when AWS says a table does not exist."""
    def run(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return command(args)
        except refusals as exc:
            print(f"lambdaface: {exc}", file=sys.stderr)
        except ClientError as exc:
            hint = missing(args) if _code(exc) == "ResourceNotFoundException" else ""
            print(f"lambdaface: {exc}{hint}", file=sys.stderr)
        except BotoCoreError as exc:
            print(f"lambdaface: {exc}", file=sys.stderr)
        return 1
    return run


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
