"""The one wait of the test suite: poll until something is true, within a bound.

A bound is never a timing claim: a test that needs "X never happens" proves it with a canary
(something that must happen after X would have), or by counting after the stack has stopped.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T], timeout: float = 120.0, every: float = 0.25) -> T:
    """Call `check` until it returns something truthy, and return that; AssertionError naming
    `what` (and the last value seen) when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s; last: {str(value)[:500]}")
        time.sleep(every)
