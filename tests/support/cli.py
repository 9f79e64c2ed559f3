"""The `lambdaface` command line as a user runs it: a real process."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

from lambdaface.local.process import StackProcess, clean_env
from support import ROOT


def lambdaface(*args: str, stack: StackProcess | None = None, timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `lambdaface ARGS` (aimed at `stack`, if given) and capture its output as text."""
    env = stack.client_env() if stack else clean_env()
    return subprocess.run([sys.executable, "-m", "lambdaface.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)
