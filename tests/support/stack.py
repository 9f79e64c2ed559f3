"""`lambdaface local` for tests: lambdaface.local.process.StackProcess (the one launcher), a fixture
factory for a stack per module, and a test's clients of a running stack.

    stack = stack_fixture("e2e", workers=1)        # at module level: a fixture named `stack`

    def test_x(stack: StackProcess) -> None:
        aws = StackClients(stack)
        aws.put("queries/a.jpg", data)
        stack.wait_for_line(r"^RecognizeFunction queries/a.jpg: succeeded \\(")

Counting job lines: a worker deletes its messages, then reports, and the stack prints the report
some time later (after an autosave, for one). Empty queues and written results do not mean every
line is out; after `stack.stop()` they are (it drains every worker's report pipe before exiting,
and StackProcess.stop() reads stdout to its end). Count with `stack.wait_for_lines(pattern, n)`,
or after stopping.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from lambdaface.local import lines as stack_lines
from lambdaface.local.process import StackProcess
from support import TESTS
from support.aws import Clients

JOBS_TABLE, GALLERY_TABLE = "lambdaface-JobsTable", "lambdaface-GalleryTable"
QUEUES = ("EnrollQueue", "RecognizeQueue", "VideoQueue")
DEAD_LETTER_QUEUES = ("EnrollDeadLetterQueue", "RecognizeDeadLetterQueue", "VideoDeadLetterQueue")
SCRIPTED_HANDLER = "support.scripted_handler.handler"  # needs pythonpath_with_tests()
SCHEDULED_HANDLER = "support.scheduled_handler.handler"  # the same; a scheduled function's


def pythonpath_with_tests() -> dict[str, str]:
    """The environment that lets the stack's workers import tests/support (SCRIPTED_HANDLER)."""
    return {"PYTHONPATH": str(TESTS)}


def stack_fixture(name: str, *args: str, workers: int = 1, env: dict[str, str] | None = None,
                  prepare: Callable[[Path], list[str]] | None = None, hosts: tuple[str, ...] | None = None) -> Any:
    """A module-scoped fixture: a stack of its own (`lambdaface local --workers N ARGS`), stopped
    cleanly (exit status 0) after the module. `env` reaches the stack (LAMBDAFACE_* settings reach
    its functions); `prepare(directory)` may write files there and returns more arguments; `hosts`
    runs the module's tests once per `--host` (a stack each, one after the other)."""

    @pytest.fixture(scope="module", params=hosts, ids=(lambda h: f"host={h}") if hosts else None)
    def fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
        directory = tmp_path_factory.mktemp(name)
        more = prepare(directory) if prepare else []
        if hosts:
            more += ["--host", request.param]
        with StackProcess(directory / "state", *args, *more, workers=workers, env=env) as stack:
            yield stack
            assert stack.stop() == 0, stack.stderr()[-3000:]

    return fixture


class StackClients(Clients):
    """A test's clients of a running stack, and the reads tests repeat: queues, tables, results."""

    def __init__(self, stack: StackProcess) -> None:
        super().__init__(stack.endpoint, stack.bucket)

    def queue_url(self, logical_id: str) -> str:
        return self.sqs.get_queue_url(QueueName=f"lambdaface-{logical_id}")["QueueUrl"]

    def depth(self, logical_id: str) -> int:
        """Messages in a queue: visible, in flight and delayed."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url(logical_id), AttributeNames=names)
        return sum(int(v) for v in attributes["Attributes"].values())

    def depths(self, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
        return {q: self.depth(q) for q in queues}

    def idle(self, queues: tuple[str, ...] = QUEUES) -> bool:
        """No message left in `queues` (the results of their jobs are written; see the module's note on lines)."""
        return all(self.depth(q) == 0 for q in queues)

    def receive_all(self, logical_id: str, hide_s: int = 600) -> list[dict[str, Any]]:
        """Every visible message of a queue, with its attributes; hidden for `hide_s` seconds (at
        least 1: a message left visible would be received again and again)."""
        assert hide_s >= 1, hide_s
        url, found = self.queue_url(logical_id), []
        while got := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                              AttributeNames=["All"], VisibilityTimeout=hide_s).get("Messages", []):
            found += got
        return found

    def jobs(self) -> list[dict[str, Any]]:
        return self.scan(JOBS_TABLE)

    def jobs_by_key(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Job records by (source key, kind)."""
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for job in self.jobs():
            out.setdefault((job["key"], job["kind"]), []).append(job)
        return out

    def gallery(self) -> list[dict[str, Any]]:
        """Every item of the gallery table, its bookkeeping (partitions starting with "#") included."""
        return self.scan(GALLERY_TABLE)

    def gallery_faces(self) -> list[dict[str, Any]]:
        """The gallery's faces (no valid person name starts with "#", which bookkeeping items use)."""
        return [item for item in self.gallery() if not str(item["person"]).startswith("#")]


def job_lines(lines: list[str], function: str = r"\w+") -> list[re.Match[str]]:
    """The job lines among stdout lines of a stack, parsed (function, key, outcome), of the
    functions whose name matches `function`. (A pipeline message's line, "VideoFunction message
    ID: ...", is not a job line.)"""
    matches = (stack_lines.JOB.match(line) for line in lines)
    return [m for m in matches if m and re.fullmatch(function, m["function"])]


def handler_logs(state_dir: Path, function: str) -> list[dict[str, Any]]:
    """A function's structured log lines (Powertools JSON), across every run of the stack."""
    path = state_dir / "logs" / f"{function}.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]
