"""Lambda entry point: S3 events under `models/` (via SQS) enroll or forget a face."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.pipeline import purges, runner
from shared.pipeline.delivery import SERVICE
from shared.pipeline.metrics import metrics

logger = Logger(service=SERVICE)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
runner.warm_up_for_snapshot()  # with SnapStart, the models load into the snapshot


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> list[dict[str, Any]]:
    """One SQS message: run its jobs (or the delayed gallery purge a forget sent); raising reports
    it in batchItemFailures."""
    if purges.handle(record.body, lambda_context):
        return []
    return runner.process_record(record, runner.ENROLL, lambda_context)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)  # ColdStart; each job's metrics: pipeline/metrics.py
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS batch in, `{"batchItemFailures": [...]}` out."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
