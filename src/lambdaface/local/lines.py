"""The local stack's output lines: written by the stack, read by its launcher, tests and benchmarks.

    stdout  lambdaface local: ready at http://127.0.0.1:PORT bucket=NAME
    stdout  <Function> <key>: <outcome> (<seconds> s[, attempt N])     one line per finished job
    stdout  <Function> <key>: attempt N failed, will be retried|goes to the dead-letter queue[: error]
    stderr  lambdaface local: worker N (<Function>) started, pid PID
"""
from __future__ import annotations

import re

READY = re.compile(r"^lambdaface local: ready at (?P<endpoint>http://\S+) bucket=(?P<bucket>\S+)$")
JOB = re.compile(r"^(?P<function>\w+) (?P<key>[^\s/]+/\S+): (?P<outcome>.*)$")  # keys have a prefix/
WORKER_STARTED = re.compile(r"worker (?P<index>\d+) \((?P<function>\w+)\) started, pid (?P<pid>\d+)")


def ready(endpoint: str, bucket: str) -> str:
    """The line that says the stack serves requests and runs its workers."""
    return f"lambdaface local: ready at {endpoint} bucket={bucket}"


def worker_started(index: int, function: str, pid: int) -> str:
    """The stderr line (after the `lambdaface local: ` prefix) for a new worker process."""
    return f"worker {index} ({function}) started, pid {pid}"
