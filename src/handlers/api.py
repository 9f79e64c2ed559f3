"""Lambda entry point: the synchronous API behind a Function URL (POST /recognize, POST /compare)."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.config import current_config
from shared.pipeline import runner, sync_api
from shared.pipeline.delivery import SERVICE

logger = Logger(service=SERVICE)
runner.warm_up_for_snapshot()  # with SnapStart, the models load into the snapshot (never the gallery)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A payload format 2.0 request in, its response out (the gallery stays warm between calls)."""
    return sync_api.handle_event(event, current_config())
