"""Recovery end to end, with the real handlers: a worker killed mid-job is replaced and the job
still gets its result (a clean restart is tested in test_e2e_local.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

from local_support import LocalStack

from lambdaface import watch


def _wait_for_log(log: Path, text: str, offset: int) -> None:
    """Poll a worker's log until `text` appears after `offset`."""
    deadline = time.monotonic() + 120
    while not (log.exists() and text in log.read_text()[offset:]):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {log}"
        time.sleep(0.02)


def test_a_worker_killed_mid_job_still_gets_the_result(tmp_path: Path, faces_dir: Path) -> None:
    # The job's lease (function timeout + 5 s) must end before the redelivery (visibility timeout).
    with LocalStack(
        tmp_path / "state", "--function-timeout", "6", "--visibility-timeout", "12", workers=1
    ) as stack:
        (pid,) = stack.worker_pids("RecognizeFunction")
        log = stack.state_dir / "logs" / "RecognizeFunction.log"
        _wait_for_log(log, "REPORT RequestId:", 0)  # the s3:TestEvent every start sends is done
        offset = log.stat().st_size
        s3 = stack.client("s3")
        s3.upload_file(str(faces_dir / "seed/john1.jpg"), stack.bucket, "queries/john1.jpg")
        _wait_for_log(log, "START RequestId:", offset)  # the worker took the message, the handler runs
        os.kill(pid, signal.SIGKILL)
        assert watch.read_json(s3, stack.bucket, "results/queries/john1.jpg.json") is None

        expectation = watch.current_expectation(s3, stack.bucket, "queries/john1.jpg")
        found = watch.wait_for(s3, stack.bucket, [expectation], timeout=180)["queries/john1.jpg"]
        assert found is not None and found["status"] == "succeeded"
        assert found["faces"] and found["people"] == []  # nobody is enrolled in this stack
        line = stack.wait_for_line(r"^RecognizeFunction queries/john1.jpg: succeeded \(")
        assert re.search(r", attempt [23]\)$", line), line  # the killed attempt was the first
        assert f"({'RecognizeFunction'}) exited with -9, starting another" in stack.stderr()
        assert stack.worker_pids("RecognizeFunction") not in ([], [pid])
        assert stack.stop() == 0


def test_sigterm_finishes_the_job_in_flight_then_saves(tmp_path: Path, faces_dir: Path) -> None:
    with LocalStack(tmp_path / "state", workers=1) as stack:
        log = stack.state_dir / "logs" / "RecognizeFunction.log"
        _wait_for_log(log, "REPORT RequestId:", 0)  # the s3:TestEvent every start sends is done
        offset = log.stat().st_size
        stack.client("s3").upload_file(str(faces_dir / "seed/john2.jpg"), stack.bucket, "queries/john2.jpg")
        _wait_for_log(log, "START RequestId:", offset)
        assert stack.stop(signal.SIGTERM) == 0
    assert re.search(r"^RecognizeFunction queries/john2.jpg: succeeded \(\d+\.\d s\)$", "\n".join(stack.lines), re.M)
    saved = json.loads((stack.state_dir / "state.json").read_text())
    assert "results/queries/john2.jpg.json" in {o["key"] for o in saved["objects"]}
    assert saved["messages"]["RecognizeQueue"] == []  # the message was deleted: nothing left to do
