"""The 9 s Hamilton clip end to end on the local stack: enrolled with the client, uploaded with the
client, planned, fanned out to two video workers, each segment recognised with the CNN detector,
merged by the last one. The one run of the whole clip in the test suite (about a minute)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import lambdaface
from support.stack import StackProcess, stack_fixture

CLIP = "video/short_hamilton_clip.mp4"
DURATION_S = 275 / 29.97  # 9.18 s

stack = stack_fixture("e2e-video", workers=2)  # 2 workers per function: 2 of them serve the video queue


@pytest.fixture(scope="module")
def clip_result(stack: StackProcess, faces_dir: Path) -> dict[str, Any]:
    for person, photo in (("lin_manuel_miranda", "lin1.png"), ("alex_lacamoire", "alex3.png")):
        enrolled = lambdaface("enroll", person, str(faces_dir / "people" / person / photo), stack=stack)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    done = lambdaface("recognize", "--json", "--timeout", "900", str(faces_dir / CLIP), stack=stack, timeout=960)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_both_people_appear_in_the_clip(clip_result: dict[str, Any]) -> None:
    result = clip_result
    assert result["status"] == "succeeded", result
    assert (result["kind"], result["media"], result["source"]) == ("recognize", "video", "queries/short_hamilton_clip.mp4")
    assert result["duration_s"] == pytest.approx(DURATION_S, abs=0.01) and result["fps"] == pytest.approx(29.97, abs=0.01)
    assert result["segments"] == 4  # 3 s each: 90 + 90 + 90 + 5 frames
    assert result["frames_sampled"] == len(result["frames"]) == 28  # 3 per second, every 10th frame
    times = [f["t"] for f in result["frames"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert result["people"] == ["alex_lacamoire", "lin_manuel_miranda"]
    intervals = {a["person"]: a["intervals"] for a in result["appearances"]}
    assert set(intervals) == set(result["people"])
    for person, spans in intervals.items():
        for start, end in spans:
            assert 0 <= start < end <= DURATION_S, (person, spans)

    def seen(person: str, a: float, b: float) -> bool:
        return any(start < b and a < end for start, end in intervals[person])

    assert seen("alex_lacamoire", 0.5, 1.5)  # in profile, about 0.7-1.3 s
    assert seen("lin_manuel_miranda", 3.0, 7.0)  # facing the camera, about 2.8-7 s
    assert not seen("lin_manuel_miranda", 0.0, 0.6)
    for frame in result["frames"]:
        for face in frame["faces"]:
            if face["person"]:
                assert face["distance"] < 0.6


def test_the_stack_ran_a_plan_and_four_segments(stack: StackProcess, clip_result: dict[str, Any]) -> None:
    assert clip_result["status"] == "succeeded"
    # The last segment's line may come after its result (a worker reports after deleting the
    # message): count once the stack has stopped, when every line it printed is in.
    stack.wait_for_lines(r"^VideoFunction message \S+: done \(", 5, timeout=60)
    assert stack.stop() == 0
    stack.wait_for_line(r"^RecognizeFunction queries/short_hamilton_clip.mp4: no result \(", timeout=0)  # handed off
    video = [line for line in stack.lines if line.startswith("VideoFunction ")]
    assert len([line for line in video if " done (" in line]) == 5, stack.lines
    assert not [line for line in video if "failed" in line]
