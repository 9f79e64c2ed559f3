"""The local stack's output lines: written by the stack, read by its launcher, tests and benchmarks.

    stdout  lambdaface local: ready at http://127.0.0.1:PORT bucket=NAME
    stdout  <Function> <key>: <outcome> (<seconds> s[, attempt N])     one line per finished job
    stdout  <Function> <key>: attempt N failed, will be retried|goes to the dead-letter queue[: error]
    stdout  <Function> scheduled run N: succeeded (<seconds> s)        one line per run of a scheduled function
    stdout  <Function> scheduled run N: failed (<seconds> s): <why>    (an exception, an exit, the timeout)
    stderr  lambdaface local: worker N (<Function>) started, pid PID
    stderr  lambdaface local: API worker N (<Function>) started, pid PID   (the synchronous API's)
"""
from __future__ import annotations

import re

READY = re.compile(r"^lambdaface local: ready at (?P<endpoint>http://\S+) bucket=(?P<bucket>\S+)$")
JOB = re.compile(r"^(?P<function>\w+) (?P<key>[^\s/]+/\S+): (?P<outcome>.*)$")  # keys have a prefix/
SCHEDULED = re.compile(
    r"^(?P<function>\w+) scheduled run (?P<run>\d+): (?P<outcome>succeeded|failed) \((?P<seconds>\d+\.\d) s\)"
    r"(?:: (?P<error>.*))?$"
)
WORKER_STARTED = re.compile(r"worker (?P<index>\d+) \((?P<function>\w+)\) started, pid (?P<pid>\d+)")


def ready(endpoint: str, bucket: str) -> str:
    """The line that says the stack serves requests and runs its workers."""
    return f"lambdaface local: ready at {endpoint} bucket={bucket}"


def worker_started(index: int, function: str, pid: int) -> str:
    """The stderr line (after the `lambdaface local: ` prefix) for a new worker process."""
    return f"worker {index} ({function}) started, pid {pid}"


def scheduled_run(function: str, run: int, ok: bool, seconds: float, error: str | None = None) -> str:
    """The stdout line for a finished run of a scheduled function (run 1: the one at start)."""
    outcome = "succeeded" if ok else "failed"
    why = f": {error}" if not ok and error else ""
    return f"{function} scheduled run {run}: {outcome} ({seconds:.1f} s){why}"
