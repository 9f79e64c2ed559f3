"""The video benchmark's arithmetic (benchmarks/bench_video.py), on made-up measurements."""
from __future__ import annotations

import sys

from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_video  # noqa: E402


def run(wall_s: float) -> dict:
    return {"wall_s": wall_s, "wall_per_video_s": round(wall_s / 9.18, 3)}


def test_the_last_run_of_each_worker_count_counts() -> None:
    measured = [
        {"video_workers": 1, "runs": [run(80.0), run(72.0)]},  # the first run loads the models
        {"video_workers": 2, "runs": [run(50.0), run(40.0)]},
    ]
    assert bench_video.summary(measured) == {
        "wall_per_video_s": {1: round(72.0 / 9.18, 3), 2: round(40.0 / 9.18, 3)},
        "speedup": {2: 1.8},
    }
