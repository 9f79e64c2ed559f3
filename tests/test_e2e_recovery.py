"""Recovery end to end, with the real handlers: a worker killed mid-job is replaced and the job
still gets its result (a clean restart is tested in test_e2e_local.py)."""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from support.stack import StackClients, StackProcess
from support.waits import wait_until

from lambdaface import watch


def wait_for_log(log: Path, text: str, offset: int) -> None:
    """Wait for `text` in a function's log, after its first `offset` characters."""
    wait_until(f"{text!r} in {log}", lambda: log.exists() and text in log.read_text()[offset:], timeout=120, every=0.02)


def test_a_worker_killed_mid_job_still_gets_the_result(tmp_path: Path, faces_dir: Path) -> None:
    # The job's lease (function timeout + 5 s) must end before the redelivery (visibility timeout).
    with StackProcess(
        tmp_path / "state", "--function-timeout", "6", "--visibility-timeout", "12", workers=1
    ) as stack:
        (pid,) = stack.worker_pids("RecognizeFunction")
        log = stack.state_dir / "logs" / "RecognizeFunction.log"
        wait_for_log(log, "REPORT RequestId:", 0)  # the s3:TestEvent every start sends is done
        offset = len(log.read_text())
        aws = StackClients(stack)
        aws.s3.upload_file(str(faces_dir / "seed/john1.jpg"), stack.bucket, "queries/john1.jpg")
        wait_for_log(log, "START RequestId:", offset)  # the worker took the message, the handler runs
        os.kill(pid, signal.SIGKILL)
        assert aws.maybe_result("queries/john1.jpg") is None

        expectation = watch.current_expectation(aws.s3, stack.bucket, "queries/john1.jpg")
        found = watch.wait_for(aws.s3, stack.bucket, [expectation], timeout=180)["queries/john1.jpg"]
        assert found is not None and found["status"] == "succeeded"
        assert found["faces"] and found["people"] == []  # nobody is enrolled in this stack
        line = stack.wait_for_line(r"^RecognizeFunction queries/john1.jpg: succeeded \(")
        assert re.search(r", attempt [23]\)$", line), line  # the killed attempt was the first
        assert "(RecognizeFunction) exited with -9, starting another" in stack.stderr()
        assert stack.worker_pids("RecognizeFunction") not in ([], [pid])
        assert stack.stop() == 0


def test_sigterm_finishes_the_job_in_flight_then_saves(tmp_path: Path, faces_dir: Path) -> None:
    with StackProcess(tmp_path / "state", workers=1) as stack:
        log = stack.state_dir / "logs" / "RecognizeFunction.log"
        wait_for_log(log, "REPORT RequestId:", 0)  # the s3:TestEvent every start sends is done
        offset = len(log.read_text())
        stack.client("s3").upload_file(str(faces_dir / "seed/john2.jpg"), stack.bucket, "queries/john2.jpg")
        wait_for_log(log, "START RequestId:", offset)
        assert stack.stop(signal.SIGTERM) == 0
    # after stop(), every line the stack printed is in stack.lines
    assert re.search(r"^RecognizeFunction queries/john2.jpg: succeeded \(\d+\.\d s\)$", "\n".join(stack.lines), re.M)
    saved = json.loads((stack.state_dir / "state.json").read_text())
    assert "results/queries/john2.jpg.json" in {o["key"] for o in saved["objects"]}
    assert saved["messages"]["RecognizeQueue"] == []  # the message was deleted: nothing left to do
