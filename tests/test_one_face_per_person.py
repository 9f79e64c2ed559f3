"""One face per person per photo (issue 22): when two faces of one photo, or of one video frame,
both match the same enrolled person, only the nearer is named; the other takes its next candidate
within the threshold, or none. LAMBDAFACE_ONE_FACE_PER_PERSON=false (template parameter
OneFacePerPerson) turns the rule off, for mirrors and posters.

Real photos: john1.jpg beside its mirror image (one person, twice), john enrolled from john0.jpg;
the engine's own unit tests are in tests/test_matching.py."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps
from support.images import encode, photo
from support.lambda_events import OK, context
from support.moto import moto_resources
from support.video import write_video

from handlers import enroll, recognize
from shared.config import EngineConfig, VideoConfig
from shared.engine.matching import Gallery
from shared.engine.video import probe_video, recognize_frames

THRESHOLD = 0.6


def twice(faces_dir: Path) -> Image.Image:
    """john1.jpg and its mirror image side by side: the same face twice, at two distances from john0."""
    john = photo(faces_dir, "seed/john1.jpg")
    canvas = Image.new("RGB", (john.width * 2, john.height))
    canvas.paste(john, (0, 0))
    canvas.paste(ImageOps.mirror(john), (john.width, 0))
    return canvas


def recognized(moto_endpoint: str, faces_dir: Path, **env: str) -> dict:
    """john (john0.jpg) and obama enrolled, the doubled photo recognized: its result."""
    with moto_resources(moto_endpoint, **env) as aws:
        for key, rel in (("models/john/john0.jpg", "seed/john0.jpg"), ("models/obama/obama.jpg", "people/obama/obama.jpg")):
            aws.put(key, (faces_dir / rel).read_bytes())
            assert enroll.handler(aws.event(key), context()) == OK
            assert aws.result(key)["status"] == "succeeded"
        aws.put("queries/twice.jpg", encode(twice(faces_dir), "JPEG", quality=95))
        assert recognize.handler(aws.event("queries/twice.jpg"), context()) == OK
        return aws.result("queries/twice.jpg")


def test_the_same_face_twice_in_a_photo_names_only_the_nearer(moto_endpoint: str, faces_dir: Path) -> None:
    result = recognized(moto_endpoint, faces_dir)
    assert result["status"] == "succeeded"
    faces = sorted(result["faces"], key=lambda f: f["box"]["left"])
    assert len(faces) == 2
    # Both faces are within the threshold of john: without the rule both would be named john.
    nearest = [f["candidates"][0] for f in faces]
    assert [c["person"] for c in nearest] == ["john", "john"]
    assert all(c["distance"] <= THRESHOLD for c in nearest)
    named, other = sorted(faces, key=lambda f: f["candidates"][0]["distance"])
    assert named["person"] == "john" and "nearest_taken" not in named
    assert named["distance"] == named["candidates"][0]["distance"]
    # The farther face's next candidate (obama) is beyond the threshold: it is nobody.
    assert other["candidates"][1]["person"] == "obama" and other["candidates"][1]["distance"] > THRESHOLD
    assert other["person"] is None and other["nearest_taken"] is True
    assert other["distance"] == other["candidates"][0]["distance"]  # still its nearest person's distance
    assert result["people"] == ["john"]
    assert set(named) == {"box", "person", "distance", "candidates"}  # the shape of a face is kept


def test_with_the_rule_off_both_faces_are_named(moto_endpoint: str, faces_dir: Path) -> None:
    result = recognized(moto_endpoint, faces_dir, LAMBDAFACE_ONE_FACE_PER_PERSON="false")
    assert result["status"] == "succeeded"
    assert [f["person"] for f in result["faces"]] == ["john", "john"]
    assert not any("nearest_taken" in f for f in result["faces"])
    assert result["people"] == ["john"]


@pytest.mark.parametrize("rule", [True, False])
def test_the_same_face_twice_in_a_video_frame(tmp_path: Path, faces_dir: Path, photos, rule: bool) -> None:
    """The rule applies per frame: a short video of the doubled photo, john enrolled."""
    gallery = Gallery.from_pairs([("john", photos.faces("seed/john0.jpg")[0].embedding)])
    frame = twice(faces_dir)
    frame.thumbnail((640, 640))
    bgr = cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR)
    clip = str(write_video(tmp_path / "twice.mp4", [bgr] * 4, fps=2.0))
    cfg = VideoConfig().engine(EngineConfig(one_face_per_person=rule))
    [seen] = recognize_frames(clip, probe_video(clip), [1], gallery, cfg)
    people = sorted(seen["faces"], key=lambda f: f["distance"])
    assert len(people) == 2 and all(f["distance"] <= THRESHOLD for f in people)
    if rule:
        assert [f["person"] for f in people] == ["john", None]
        assert people[1]["nearest_taken"] is True and "nearest_taken" not in people[0]
    else:
        assert [f["person"] for f in people] == ["john", "john"]
