"""`lambdaface local` as a child process: the one launcher used by tests, benchmarks and the demo.

    with StackProcess(state_dir, workers=2) as stack:
        s3 = stack.client("s3")
        ...
        stack.wait_for_line(r"RecognizeFunction queries/x.jpg: succeeded")
    # stopped (SIGTERM): every line it printed is in stack.lines

Its stdout is read line by line into `lines` (job lines, see lines.py); its stderr goes to a file.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import boto3

from lambdaface.local import keys as stack_keys
from lambdaface.local import lines as stack_lines
from shared.config import BUCKET_ENV
from shared.pipeline.keys import result_key

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
STARTUP_S = 180.0  # generous: a cold 2-core machine imports moto, boto3 and dlib


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without AWS settings (they belong to the user), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra or {})
    return env


class StackProcess:
    """`lambdaface local --port 0 ...` in a subprocess; stdout lines are collected as they come."""

    def __init__(
        self,
        state_dir: Path,
        *args: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        stderr_path: Path | None = None,
        new_session: bool = False,
        startup_s: float = STARTUP_S,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        """Start the stack and wait until it is ready (its scheduled functions have run once).
        `args` are more `lambdaface local` options; `env` is added to the environment (LAMBDAFACE_*
        settings reach the functions); `parameters` are template parameters (`--parameter
        NAME=VALUE`); `new_session` keeps a terminal's Ctrl-C from reaching it before its parent decides."""
        self.state_dir = Path(state_dir)
        self.stderr_path = stderr_path or self.state_dir.parent / f"{self.state_dir.name}.stderr"
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        command = [sys.executable, "-m", "lambdaface.cli", "local", "--port", "0", "--workers", str(workers),
                   "--state-dir", str(self.state_dir), *args,
                   *(f"--parameter={name}={value}" for name, value in (parameters or {}).items())]
        self._stderr = open(self.stderr_path, "a")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=clean_env(env), stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1, start_new_session=new_session,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            ready = stack_lines.READY.match(self.wait_for_line(stack_lines.READY, startup_s))
        except AssertionError:
            self.stop(signal.SIGKILL)
            raise
        assert ready is not None
        self.endpoint, self.bucket = ready["endpoint"], ready["bucket"]
        self.keys = _keys_of(self.state_dir, command, env or {})

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    # --- output ------------------------------------------------------------------------------

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 120.0) -> str:
        """The first stdout line matching `pattern`, waiting for it if need be (AssertionError if none)."""
        return self.wait_for_lines(pattern, 1, timeout)[0]

    def wait_for_lines(self, pattern: str | re.Pattern[str], count: int, timeout: float = 120.0) -> list[str]:
        """The first `count` stdout lines matching `pattern`, waiting for them if need be."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"{len(found)} of {count} lines matching {regex.pattern!r} in {self.lines[-50:]}; "
                        f"stderr:\n{self.stderr()[-5000:]}"
                    )
                self._changed.wait(min(left, 0.5))

    def job_lines(self) -> list[re.Match[str]]:
        """Every job line so far, parsed (function, key, outcome)."""
        with self._changed:
            return [m for m in map(stack_lines.JOB.match, self.lines) if m]

    def stderr(self) -> str:
        """What the stack wrote on stderr so far."""
        return self.stderr_path.read_text()

    # --- the stack's services ----------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client of the caller's own, aimed at the stack."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **self.keys.boto())

    def client_env(self) -> dict[str, str]:
        """The environment of a client process (`lambdaface enroll ...`) aimed at the stack (with
        its keys in remote mode)."""
        return clean_env({"AWS_ENDPOINT_URL": self.endpoint, **self.keys.env(),
                          "AWS_DEFAULT_REGION": REGION, BUCKET_ENV: self.bucket})

    def result(self, source_key: str, timeout: float = 120.0, interval: float = 0.1) -> dict[str, Any]:
        """The result document of `source_key`, waiting for it to appear (TimeoutError if it does not)."""
        s3 = self.client("s3")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return json.loads(s3.get_object(Bucket=self.bucket, Key=result_key(source_key))["Body"].read())
            except s3.exceptions.NoSuchKey:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no result for {source_key} after {timeout:.0f} s") from None
                time.sleep(interval)

    # --- its workers -------------------------------------------------------------------------

    def worker_pids(self, function: str) -> list[int]:
        """Pids of the live workers of `function` (e.g. "RecognizeFunction"), from the stack's stderr."""
        started = [m for m in stack_lines.WORKER_STARTED.finditer(self.stderr()) if m["function"] == function]
        return [int(m["pid"]) for m in started if Path(f"/proc/{m['pid']}").exists()]

    def peak_rss_mb(self, function: str) -> float:
        """The largest peak resident memory (VmHWM) among the function's live workers, in MiB."""
        return max((_peak_rss_mb(pid) for pid in self.worker_pids(function)), default=float("nan"))

    # --- stop --------------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 180.0) -> int:
        """Signal the stack and wait for it to exit; its exit status. Every line it printed is then in `lines`."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            self._reader.join(timeout)
            return code
        finally:
            self._stderr.close()

    def __enter__(self) -> "StackProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process.poll() is None:
            self.stop(signal.SIGKILL if exc[0] else signal.SIGTERM)


def _keys_of(state_dir: Path, command: list[str], env: Mapping[str, str]) -> stack_keys.Keys:
    """The keys a client of the stack started with `command` signs with: its own in remote mode
    (--keys-file, the environment given, else the state folder's), else the dummy ones."""
    if "--allow-remote" not in command:
        return stack_keys.DUMMY
    keys_file = next((Path(a.partition("=")[2]) for a in command if a.startswith("--keys-file=")), None)
    if "--keys-file" in command:
        keys_file = Path(command[command.index("--keys-file") + 1])
    return stack_keys.resolve(state_dir, keys_file, env)[0]


def _peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")  # it exited (replaced)
    peaks = [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
    return max(peaks, default=float("nan"))

