"""The SQS delivery rules both job runners follow (images and video), as Lambda's event source sets them.

- A record's `ApproximateReceiveCount` says which delivery this is; on the last one
  (>= MAX_RECEIVE_COUNT) a failing job is recorded as failed (RETRIES_EXHAUSTED) before its message
  goes to the dead-letter queue, so the DLQ copy and the job state agree.
- A failure no retry can change (`is_permanent`: AWS refused the request itself, e.g. a
  ValidationException, AccessDenied or a missing table) finishes the job on the delivery it
  happened on, with REQUEST_REFUSED, instead of burning every delivery and ending in the DLQ.
- An attempt holds its job for as long as Lambda lets it run (the context's remaining time), plus
  a margin; without a Lambda context, for Lambda's longest timeout.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Callable

import botocore.exceptions
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import errors
from shared.aws.clients import error_code

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "lambdaface"  # the handlers' Logger is the parent
logger = Logger(service=SERVICE, child=True)

DEFAULT_LEASE_S = 900.0  # Lambda's longest timeout, used when there is no Lambda context
LEASE_MARGIN_S = 5.0

# AWS error codes that mean "this request will never succeed as sent": a bad parameter (an
# over-long key, a malformed expression), a missing permission or resource. Throttling, 5xx,
# transaction conflicts and network errors are not among them: those are retried.
PERMANENT_CODES = frozenset({
    "ValidationException", "ValidationError", "InvalidParameterValue", "InvalidParameterCombination",
    "InvalidArgument", "InvalidRequest", "KeyTooLongError", "SerializationException",
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidAccessKeyId", "ResourceNotFoundException", "NoSuchBucket", "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue", "ItemCollectionSizeLimitExceededException",
})


def receive_count(record: SQSRecord) -> int:
    """Which delivery of its message `record` is (1 for the first)."""
    return int((record.raw_event.get("attributes") or {}).get("ApproximateReceiveCount") or 1)


def is_last_delivery(count: int, max_receive_count: int) -> bool:
    """True when a failure now sends the message to the dead-letter queue."""
    return count >= max_receive_count


def lease_s(lambda_context: Any) -> float:
    """How long an attempt may hold its job: until Lambda would have killed it, plus a margin."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return (remaining() / 1000.0 if remaining else DEFAULT_LEASE_S) + LEASE_MARGIN_S


def attempt_id(lambda_context: Any) -> str:
    """A name for this attempt, unique across deliveries and processes."""
    return f"{getattr(lambda_context, 'aws_request_id', 'local')}/{uuid.uuid4().hex[:8]}"


def failure_reason(exc: BaseException) -> dict[str, str]:
    """{code, message} of an unexpected failure (the AWS error code when there is one)."""
    return {"code": error_code(exc) or type(exc).__name__, "message": str(exc)[:1000]}


def is_permanent(exc: BaseException) -> bool:
    """Whether `exc` says AWS refused the request for good (retrying the job cannot help)."""
    if isinstance(exc, botocore.exceptions.ParamValidationError):  # refused by boto3 before sending
        return True
    return error_code(exc) in PERMANENT_CODES


def refused(reason: dict[str, str]) -> dict[str, str]:
    """The job's error after AWS refused a request for good (`reason`: failure_reason's)."""
    return {"code": errors.REQUEST_REFUSED, "message": f"{reason['code']}: {reason['message']}"}


def retries_exhausted(count: int, reason: dict[str, str]) -> dict[str, str]:
    """The job's error after its last delivery failed with `reason`."""
    return {
        "code": errors.RETRIES_EXHAUSTED,
        "message": f"{count} attempts failed; last: {reason['code']}: {reason['message']}",
    }


def best_effort(action: Callable[[], Any], log: dict[str, Any] | None = None) -> None:
    """Run `action`, logging (not raising) its failure: for recording a failure that is already raised."""
    try:
        action()
    except Exception:
        logger.exception("could not record the failure", extra=log or {})
