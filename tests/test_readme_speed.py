"""The README's Speed paragraph says what benchmarks/results.json says (it is made from it)."""
from __future__ import annotations

import copy
import json
import sys

from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_speed  # noqa: E402

RESULTS = json.loads((ROOT / "benchmarks" / "results.json").read_text())


def test_readme_speed_block_is_made_from_results_json() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_speed.current(readme) == readme_speed.block(RESULTS), (
        "README.md's Speed paragraph differs from benchmarks/results.json: run `python benchmarks/report.py`")


def test_readme_speed_figures_match_results_md() -> None:
    text = readme_speed.paragraph(RESULTS)
    results_md = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    engine = RESULTS["engine"]["chosen"]
    assert f"{engine['ms_per_face']['embed']:.1f} ms per face" in text
    assert f"{engine['ms_per_face']['embed']:.1f} ms per face" in results_md
    assert f"{RESULTS['cold_start']['seconds_to_first_result']:.2f} s" in text
    assert f"**{RESULTS['cold_start']['seconds_to_first_result']:.2f}**" in results_md
    assert f"${RESULTS['cost']['per_1000_images']['total']:.4f}" in text
    assert f"${RESULTS['cost']['per_1000_images']['total']:.4f}" in results_md
    for old in ("270 ms", "1.9x", "1.5 s from", "$0.023"):
        assert old not in text


def test_a_new_figure_changes_the_paragraph() -> None:
    changed = copy.deepcopy(RESULTS)
    changed["cold_start"]["seconds_to_first_result"] = 9.87
    changed["local"][0]["median"]["lost"] = 1
    text = readme_speed.paragraph(changed)
    assert "9.87 s from a new process" in text and "some lost or duplicated" in text
    assert readme_speed.block(changed) != readme_speed.block(RESULTS)
