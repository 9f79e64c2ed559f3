"""The benchmarks' arithmetic and bookkeeping: cost model, output parsing, lost/duplicated counts.

Nothing here measures or asserts a time; the figures themselves come from `make bench`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import burst  # noqa: E402
import compare_fr  # noqa: E402
import cost  # noqa: E402
from bench_engine import photo_paths  # noqa: E402


def test_cost_lines_follow_the_prices_and_request_counts() -> None:
    lines = cost.CostModel(seconds_per_image=0.5, memory_mb=2048).per_1000_images()
    assert lines["lambda_compute"] == pytest.approx(1000 * 0.5 * 2 * 0.0000166667)
    assert lines["lambda_requests"] == pytest.approx(0.0002)
    assert lines["sqs"] == pytest.approx(1000 * 3 * 0.40 / 1e6)
    assert lines["s3"] == pytest.approx(1000 * (2 * 0.005 / 1000 + 0.0004 / 1000))
    assert lines["dynamodb"] == pytest.approx(1000 * (2 * 0.625 + 0.125) / 1e6)
    assert lines["total"] == pytest.approx(sum(v for k, v in lines.items() if k != "total"))


def test_compute_cost_scales_with_memory_and_seconds() -> None:
    base = cost.CostModel(seconds_per_image=0.4, memory_mb=1024).per_1000_images()["lambda_compute"]
    assert cost.CostModel(0.4, 2048).per_1000_images()["lambda_compute"] == pytest.approx(2 * base)
    assert cost.CostModel(1.2, 1024).per_1000_images()["lambda_compute"] == pytest.approx(3 * base)
    assert cost.CostModel(2.0, 1024).cold_start_cost(3.0) == pytest.approx(3.0 * 0.0000166667)


def test_rekognition_price_counts_a_search_per_face() -> None:
    prices = cost.rekognition_per_1000_images(faces_per_image=1.5)
    assert prices == {"largest_face_only": pytest.approx(1.0), "every_face": pytest.approx(2.5)}


def test_memory_comes_from_the_template(tmp_path: Path) -> None:
    text = (ROOT / "template.yaml").read_text()
    assert cost.recognize_memory_mb() > 0
    start = text.index("  RecognizeMemorySize:")
    default = text.index("Default:", start)
    end = text.index("\n", default)
    changed = text[:default] + "Default: 3008" + text[end:]
    (tmp_path / "template.yaml").write_text(changed)
    assert cost.recognize_memory_mb(tmp_path / "template.yaml") == 3008


NAMES = {"a.jpg": "people/x/a.jpg", "b.jpg": "multi/b.jpg", "c.png": "hard/c.png"}


def test_face_recognition_output_is_counted_per_image() -> None:
    out = "\n".join([
        "/tmp/u/b.jpg,john0", "/tmp/u/b.jpg,unknown_person", "/tmp/u/b.jpg,unknown_person",
        "/tmp/u/a.jpg,unknown_person", "/tmp/u/c.png,no_persons_found",
    ])
    faces, matches = compare_fr.parse_face_recognition(out, NAMES)
    assert faces == {"people/x/a.jpg": 1, "multi/b.jpg": 3, "hard/c.png": 0}
    assert matches == {"people/x/a.jpg": 0, "multi/b.jpg": 1, "hard/c.png": 0}


def test_lambdaface_compare_output_is_counted_per_image() -> None:
    out = "\n".join([
        '{"image": "/tmp/u/a.jpg", "faces": 1, "distance": 0.31, "match": true}',
        '{"image": "/tmp/u/b.jpg", "faces": 3, "distance": 0.8, "match": false}',
        '{"image": "/tmp/u/c.png", "faces": 0, "distance": null, "match": false}',
    ])
    faces, matches = compare_fr.parse_lambdaface(out, NAMES)
    assert faces == {"people/x/a.jpg": 1, "multi/b.jpg": 3, "hard/c.png": 0}
    assert matches == {"people/x/a.jpg": 1, "multi/b.jpg": 0, "hard/c.png": 0}


def test_every_photo_gets_its_own_link(faces_dir: Path, tmp_path: Path) -> None:
    known, unknown, names = compare_fr.link_photos(faces_dir, tmp_path)
    photos = photo_paths(faces_dir)
    assert len(names) == len(photos) == len(list(unknown.iterdir()))
    assert sorted(names.values()) == sorted(p.relative_to(faces_dir).as_posix() for p in photos)
    assert (known / "john0.jpg").resolve() == (faces_dir / "seed/john0.jpg").resolve()


def _doc(finished: str, engine: float = 300.0) -> dict:
    return {"status": "succeeded", "finished_at": finished, "faces": [{}],
            "timings_ms": {"decode": 10.0, "detect_embed": engine - 10.5, "match": 0.5, "download": 5.0,
                           "load_gallery": 2.0, "annotate": 3.0, "upload": 4.0, "total": engine + 20}}


def test_burst_accounting_finds_lost_and_duplicated_work() -> None:
    t0 = burst.epoch("2024-05-01T12:00:00.000Z")
    uploaded = {"q/1": t0 + 0.1, "q/2": t0 + 0.2, "q/3": t0 + 0.3}
    docs = {"q/1": _doc("2024-05-01T12:00:01.100Z"), "q/2": _doc("2024-05-01T12:00:04.200Z")}  # q/3 lost
    records = [{"key": "q/1", "status": "succeeded", "attempts": 1},
               {"key": "q/2", "status": "succeeded", "attempts": 2}]  # q/2 ran twice
    lines = {"q/1": ["succeeded (0.3 s)", "succeeded (0.3 s)"], "q/2": ["succeeded (0.3 s)"]}  # q/1 reported twice
    r = burst.analyse(uploaded, t0, docs, records, lines, workers=2)
    assert (r["lost"], r["duplicated"], r["results"], r["job_records"]) == (1, 2, 2, 2)
    assert sorted(r["latencies_s"]) == pytest.approx([1.0, 4.0])
    assert r["latency_p50_s"] == pytest.approx(2.5)
    assert r["wall_s"] == pytest.approx(4.2)
    assert r["images_per_s"] == pytest.approx(3 / 4.2)
    assert r["engine_ms_per_image"] == pytest.approx(300.0)
    assert r["worker_ms_per_image"] == pytest.approx(2 * 4200 / 3)
    assert r["overhead_ms_per_image"] == pytest.approx(2 * 4200 / 3 - 300.0)


def test_a_clean_burst_has_nothing_lost_or_duplicated() -> None:
    t0 = burst.epoch("2024-05-01T12:00:00.000Z")
    uploaded = {"q/1": t0, "q/2": t0}
    docs = {k: _doc("2024-05-01T12:00:01.000Z") for k in uploaded}
    records = [{"key": k, "status": "succeeded", "attempts": 1} for k in uploaded]
    lines = {k: ["succeeded (0.3 s)"] for k in uploaded}
    r = burst.analyse(uploaded, t0, docs, records, lines, workers=1)
    assert (r["lost"], r["duplicated"], r["succeeded"]) == (0, 0, 2)


def test_job_lines_are_parsed_from_the_stacks_output() -> None:
    outcomes = burst.job_outcomes([
        "RecognizeFunction queries/bench/run0/0001-a.jpg: succeeded (0.4 s)",
        "lambdaface local: ready at http://127.0.0.1:1234 bucket=faces",
        "RecognizeFunction queries/bench/run0/0001-a.jpg: attempt 1 failed, will be retried",
    ])
    assert outcomes == {"queries/bench/run0/0001-a.jpg": ["succeeded (0.4 s)", "attempt 1 failed, will be retried"]}
