"""checkov (its own venv, `make checkov-install`) on template.yaml: no failed check, and every
skipped one justified in the template with checkov's inline `checkov:skip=CKV_AWS_N:reason`.

IAM least privilege (no `*` action, S3 by prefix, DynamoDB on the project's tables) is checked in
test_template.py; no recursive trigger, no embeddings in results and no images in the gallery in
test_hardening_inputs.py.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from lambdaface.template import TEMPLATE, load_template

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP = re.compile(r"^\s*# checkov:skip=(CKV_\w+):(.+)$", re.M)


def checkov(template: Path) -> dict[str, Any]:
    """checkov's JSON report on one template (offline: --skip-download)."""
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make checkov-install`"
    run = subprocess.run(
        [str(CHECKOV), "-f", str(template), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True, text=True, cwd=template.parent, timeout=300,
    )
    assert run.stdout.lstrip().startswith("{"), run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    report["returncode"] = run.returncode
    return report


def pairs(checks: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(check id, logical id) of each check result."""
    return {(c["check_id"], c["resource"].rpartition(".")[2]) for c in checks}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return checkov(TEMPLATE)


def test_checkov_passes_on_the_template(report: dict[str, Any]) -> None:
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and report["returncode"] == 0, failed
    assert summary["parsing_errors"] == 0
    # every resource was read, the SAM functions included
    assert summary["resource_count"] == len(load_template(TEMPLATE)["Resources"])
    assert summary["passed"] >= 40


def test_every_skipped_check_is_justified_in_the_template(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert skipped, "the template skips nothing? then drop this test's allowances"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= 40, (check["check_id"], check["resource"], reason)
    # the comments in the template are exactly the skips checkov applied
    written = SKIP.findall(TEMPLATE.read_text())
    assert len(written) == len(skipped)
    assert {check for check, _ in written} == {c["check_id"] for c in skipped}


def test_checkov_fails_the_template_without_its_justifications(report: dict[str, Any], tmp_path: Path) -> None:
    """The checks do run: without the skip comments, exactly the skipped checks fail; with a
    public bucket, the public-access checks fail too."""
    stripped = SKIP.sub("", TEMPLATE.read_text()).replace("BlockPublicPolicy: true", "BlockPublicPolicy: false")
    (tmp_path / "template.yaml").write_text(stripped)
    weakened = checkov(tmp_path / "template.yaml")
    assert weakened["returncode"] != 0
    failed = pairs(weakened["results"]["failed_checks"])
    assert pairs(report["results"]["skipped_checks"]) <= failed
    assert ("CKV_AWS_54", "Bucket") in failed  # "S3 bucket has block public policy enabled"
    assert weakened["summary"]["skipped"] == 0
