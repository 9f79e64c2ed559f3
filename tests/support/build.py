"""The Lambda package's build (src/Makefile) as tests run it: python3.12 and the build cache."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def python312() -> str:
    """A real python3.12 (pyenv's, else on PATH), not the project venv's."""
    found = os.environ.get("PY312")
    if not found and shutil.which("pyenv"):
        run = subprocess.run(["pyenv", "which", "python3.12"], capture_output=True, text=True,
                             env={**os.environ, "PYENV_VERSION": "3.12.1"})
        found = run.stdout.strip() if run.returncode == 0 else None
    found = found or shutil.which("python3.12")
    assert found, "python3.12 not found (pyenv install 3.12.1)"
    return found


def build_cache() -> Path:
    """The build cache src/Makefile uses: LAMBDAFACE_BUILD_CACHE, else ~/.cache/lambdaface."""
    return Path(os.environ.get("LAMBDAFACE_BUILD_CACHE") or Path.home() / ".cache" / "lambdaface")
