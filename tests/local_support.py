"""Test support for the local stack: `lambdaface local` as a subprocess, and the CLI.

Imported by tests/test_local_*.py, tests/test_client_*.py and tests/test_e2e_*.py.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
REGION = "us-east-1"
READY = re.compile(r"^lambdaface local: ready at (http://\S+) bucket=(\S+)$")
STARTUP_S = 120.0  # generous: a cold 2-core CI machine imports moto, boto3 and dlib


def aws_env(endpoint: str, bucket: str = "faces") -> dict[str, str]:
    """The environment of a client process aimed at the local stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        LAMBDAFACE_BUCKET=bucket,
        PYTHONPATH=str(TESTS),
    )
    return env


def lambdaface(*args: str, endpoint: str = "", timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run the `lambdaface` command line (a real process) and capture its output."""
    env = aws_env(endpoint) if endpoint else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "lambdaface.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
    )


class LocalStack:
    """`lambdaface local --port 0 ...` in a subprocess; stdout lines are collected as they come."""

    def __init__(self, state_dir: Path, *args: str, workers: int = 1):
        self.state_dir = state_dir
        self.stderr_path = state_dir.parent / f"{state_dir.name}.stderr"
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        command = [
            sys.executable, "-m", "lambdaface.cli", "local", "--port", "0",
            "--workers", str(workers), "--state-dir", str(state_dir), *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PYTHONPATH"] = str(TESTS)
        self._stderr = open(self.stderr_path, "a")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.wait_for_line(READY, STARTUP_S)
        match = READY.match(ready)
        assert match, ready
        self.endpoint, self.bucket = match.group(1), match.group(2)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 120.0) -> str:
        """The first stdout line matching `pattern`, waiting for it if need be."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"no line matching {regex.pattern!r} in {self.lines}; stderr:\n{self.stderr()}"
                    )
                self._changed.wait(min(left, 0.5))

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def client(self, service: str) -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def worker_pids(self, function: str) -> list[int]:
        """Pids of the live workers of `function`, from the stack's stderr."""
        started = re.findall(rf"worker \d+ \({function}\) started, pid (\d+)", self.stderr())
        return [int(p) for p in started if Path(f"/proc/{p}").exists()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        """Signal the stack and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
            self._reader.join(timeout)  # every line it printed is in self.lines
            return code
        finally:
            self._stderr.close()

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process.poll() is None:
            self.stop(signal.SIGKILL if exc[0] else signal.SIGTERM)
