"""Lambda entry point (scheduled, hourly): the unknown-face store's housekeeping.

Forgets remembered faces older than the retention (and what DynamoDB's TTL left in the change log
and snapshots), re-groups the clusters (Chinese whispers; merges only, each recorded), and when
remembering is switched off forgets everything that was kept; prints whether it finished and the
oldest face's age (EMF metrics, alarmed on in template.yaml).
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.pipeline import unknowns
from shared.pipeline.delivery import SERVICE

logger = Logger(service=SERVICE)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A Scheduled Event in, what the sweep did out (counts, and whether it must continue)."""
    return unknowns.sweep(deadline_ms=context.get_remaining_time_in_millis if context else None)
