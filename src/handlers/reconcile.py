"""Lambda entry point (scheduled, hourly): the gallery reconciled with `models/`.

Forgets every face whose image is gone (a removal event on the enroll queue: the forget job does
it, in order) and reports images that should have a face and do not (pipeline/reconcile.py).
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.config import current_config
from shared.pipeline import reconcile
from shared.pipeline.delivery import SERVICE

logger = Logger(service=SERVICE)
MARGIN_MS = 30_000  # stop looking at faces this long before the timeout, to send what was found


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A Scheduled Event in, the report out (counts, the first keys, whether it looked at everything)."""
    config = current_config()
    time_left = (lambda: context.get_remaining_time_in_millis() > MARGIN_MS) if context else (lambda: True)
    return reconcile.reconcile(config, config.pipeline.bucket, time_left=time_left).to_dict()
