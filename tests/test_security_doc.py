"""docs/SECURITY.md names, next to each lifetime it states, the test that proves it: every test it
names exists (a renamed or deleted test would leave a statement unproven)."""
from __future__ import annotations

import ast
import re

from support import ROOT

SECURITY = ROOT / "docs" / "SECURITY.md"
NAMED = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")


def test_every_test_named_in_security_md_exists() -> None:
    named = set(NAMED.findall(SECURITY.read_text(encoding="utf-8")))
    assert named, "SECURITY.md names no test as tests/FILE.py::TEST"
    missing = []
    for file, test in sorted(named):
        path = ROOT / "tests" / file
        functions = ({n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
                     if path.exists() else set())
        if test not in functions:
            missing.append(f"tests/{file}::{test}")
    assert missing == []


def test_the_video_row_says_what_goes_to_tmp() -> None:
    """Nothing: a video is read through ranged GETs (the template's VideoEphemeralStorage says so too)."""
    [row] = [line for line in SECURITY.read_text(encoding="utf-8").splitlines() if line.startswith("| A video being analysed")]
    assert "**nothing** is written to `/tmp`" in row
    assert "never written to /tmp" in (ROOT / "template.yaml").read_text()
