"""boto3 clients, created lazily once per process.

Endpoints come from boto3's own settings, so `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`,
`AWS_ENDPOINT_URL_DYNAMODB`, ...) points them at moto in tests and in the local stack.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import botocore.exceptions

_clients: dict[tuple[str, ...], Any] = {}
# Settings boto3 reads from the environment when it creates a client: a change makes a new client.
_ENV = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE")
_lock = threading.Lock()

# Error codes AWS uses for throttling and for its own failures: worth another try.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)


def client(service: str) -> Any:
    """The process-wide boto3 client for `service` (a new one if its endpoint settings changed)."""
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    key = (service, *(os.environ.get(name, "") for name in (*_ENV, specific)))
    found = _clients.get(key)
    if found is None:
        with _lock:
            found = _clients.get(key)
            if found is None:
                found = _clients[key] = boto3.client(service)
    return found


def reset() -> None:
    """Forget every client (they are otherwise kept for the life of the process)."""
    with _lock:
        _clients.clear()


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the call that raised `exc` may succeed (throttling, 5xx, network)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(
        exc,
        (
            botocore.exceptions.ConnectionError,  # endpoint unreachable, connection closed, timeouts
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.IncompleteReadError,
        ),
    )
