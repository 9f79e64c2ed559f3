"""Time helpers shared by the engine and the pipeline: stage timings, the wall clock and ISO 8601 timestamps."""
from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator


@contextmanager
def timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the milliseconds spent in the block to `timings[stage]` (when `timings` is given)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000


def now() -> float:
    """This machine's wall clock, seconds since the epoch (one place to read it: tests set it behind)."""
    return time.time()


def iso(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    """The seconds since the epoch of an ISO 8601 time (as iso() writes them)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
