"""The enroll function's own messages: a delayed gallery purge (see aws/gallery_purge.py).

The purge acts on this function's gallery table (from the configuration, never from the message)
and the bucket the forgets named.
"""
from __future__ import annotations

from typing import Any

from shared.aws import gallery_cache, gallery_purge
from shared.aws.gallery_table import GalleryTable
from shared.config import current_config
from shared.pipeline.delivery import logger


def handle(body: str, lambda_context: Any = None) -> bool:
    """Run the purge `body` asks for (within the invocation's time); False when `body` is not a
    purge message."""
    message = gallery_purge.parse(body)
    if message is None:
        return False
    pipeline = current_config().pipeline
    if not message.bucket or not message.token:
        logger.error("dropping a malformed purge message", extra={"body": body[:200]})
        return True
    table = GalleryTable(pipeline.gallery_table, pipeline.gallery_shards)
    try:
        time_left = (lambda: lambda_context.get_remaining_time_in_millis() / 1000) if lambda_context else None
        rounds = gallery_purge.run(table, message.bucket, pipeline.enroll_queue_url, message.token,
                                   pipeline.gallery_purge_delay_s, time_left)
    finally:
        gallery_cache.drop(table)  # no gallery kept between jobs (see images._change)
    logger.info("gallery purge", extra={"compactions": rounds, "token": message.token})
    return True
