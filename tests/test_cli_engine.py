"""`lambdaface detect` and `lambdaface compare` as a user runs them: JSON lines and exit codes."""
from __future__ import annotations

import json

import pytest
from support import cli


def lambdaface(*args: str) -> tuple[int, list[dict], str]:
    """Exit status, JSON lines, and all the output of `lambdaface ARGS`."""
    proc = cli.lambdaface(*args)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, lines, proc.stdout + proc.stderr


def test_compare_seed_example(faces_dir):
    seed = faces_dir / "seed"
    code, lines, _ = lambdaface("compare", str(seed / "john0.jpg"), str(seed / "john1.jpg"),
                                str(seed / "john2.jpg"), str(seed / "jim-carrey.jpg"))
    assert code == 0
    assert [line["match"] for line in lines] == [True, True, False]
    assert all(line["faces"] == 1 for line in lines)
    assert lines[0]["distance"] < 0.6 < lines[2]["distance"]


def test_compare_threshold_option_changes_the_verdict(faces_dir):
    seed = faces_dir / "seed"
    code, lines, _ = lambdaface("compare", "--threshold", "0.2", str(seed / "john0.jpg"), str(seed / "john1.jpg"))
    assert code == 0 and lines[0]["match"] is False


def test_compare_known_must_hold_one_face(faces_dir):
    code, lines, _ = lambdaface("compare", str(faces_dir / "multi/two_people.jpg"), str(faces_dir / "seed/john1.jpg"))
    assert code == 1
    assert lines == [{"image": str(faces_dir / "multi/two_people.jpg"),
                      "error": {"code": "MULTIPLE_FACES", "message": lines[0]["error"]["message"]}}]


def test_compare_unknown_without_faces_has_null_distance(faces_dir, tmp_path):
    from PIL import Image
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    code, lines, _ = lambdaface("compare", str(faces_dir / "seed/john0.jpg"), str(blank))
    assert code == 0
    assert lines == [{"image": str(blank), "faces": 0, "distance": None, "match": False}]


def test_detect_prints_boxes_and_errors(faces_dir, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    code, lines, _ = lambdaface("detect", str(faces_dir / "multi/two_people.jpg"), str(text))
    assert code == 1
    photo, error = lines
    assert (photo["width"], photo["height"]) == (1126, 661)
    assert len(photo["faces"]) == 2
    left, right = (f["box"] for f in photo["faces"])
    assert left["left"] < 563 < right["left"], "one face on each half of the photo"
    assert set(left) == {"left", "top", "width", "height"}
    assert error == {"image": str(text), "error": {"code": "NOT_AN_IMAGE", "message": error["error"]["message"]}}


def test_detect_all_good_exits_zero(faces_dir):
    code, lines, _ = lambdaface("detect", str(faces_dir / "seed/john0.jpg"))
    assert code == 0 and len(lines[0]["faces"]) == 1


@pytest.mark.parametrize("args", [["detect"], ["compare", "only-one"], ["nosuchcommand"], []])
def test_bad_usage_exits_two(args):
    code, _, output = lambdaface(*args)
    assert code == 2
    assert "usage:" in output


@pytest.mark.parametrize("command", ["detect", "compare"])
def test_help(command):
    code, _, output = lambdaface(command, "--help")
    assert code == 0 and "--threshold" in output and "--detector" in output
