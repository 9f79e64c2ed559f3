"""Enroll counts the faces of a photo before it embeds any (issue 20): a group photo is refused
with MULTIPLE_FACES at the cost of one detection, not of every face embedded with 5 jitters.

The embedding function is the real one, wrapped to record what it is asked to embed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.lambda_events import OK, context
from support.moto import moto_resources

from handlers import enroll
from shared.aws.gallery_table import GalleryTable
from shared.engine import faces


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(faces, jitters) of every call to the embedding function while the test runs."""
    calls: list[tuple[int, int]] = []
    real = faces.embed_faces

    def recording(image: Any, rects: Any, jitters: int = 1, timings: Any = None, cfg: Any = None) -> Any:
        calls.append((len(rects), jitters))
        return real(image, rects, jitters, timings, cfg)

    monkeypatch.setattr(faces, "embed_faces", recording)
    return calls


@pytest.mark.parametrize("photo, count", [("multi/obama_and_biden.jpg", 3), ("multi/two_people.jpg", 2)])
def test_a_group_photo_is_refused_before_any_face_is_embedded(
    moto_endpoint: str, faces_dir: Path, embedded: list[tuple[int, int]], photo: str, count: int,
) -> None:
    with moto_resources(moto_endpoint) as aws:
        key = f"models/group/{Path(photo).name}"
        aws.put(key, (faces_dir / photo).read_bytes())
        assert enroll.handler(aws.event(key), context()) == OK
        result = aws.result(key)
        assert result["status"] == "failed"
        assert result["error"] == {"code": "MULTIPLE_FACES",
                                   "message": f"{count} faces were found; an enrollment photo must show exactly one"}
        assert embedded == []  # no face of the group was embedded
        assert list(GalleryTable(aws.gallery_table).faces()) == []


def test_a_single_face_is_embedded_once_with_the_enrollment_jitters(
    moto_endpoint: str, faces_dir: Path, embedded: list[tuple[int, int]],
) -> None:
    with moto_resources(moto_endpoint) as aws:
        key = "models/obama/obama.jpg"
        aws.put(key, (faces_dir / "people/obama/obama.jpg").read_bytes())
        assert enroll.handler(aws.event(key), context()) == OK
        assert aws.result(key)["status"] == "succeeded"
        assert embedded == [(1, 5)]  # one face, LAMBDAFACE_ENROLL_JITTERS' default
        (face,) = list(GalleryTable(aws.gallery_table).faces())
        assert face.person == "obama" and face.embedding.shape == (128,)


def test_a_tiny_single_face_is_refused_before_it_is_embedded(
    moto_endpoint: str, faces_dir: Path, embedded: list[tuple[int, int]],
) -> None:
    with moto_resources(moto_endpoint, LAMBDAFACE_MIN_FACE="2000") as aws:
        key = "models/obama/obama.jpg"
        aws.put(key, (faces_dir / "people/obama/obama.jpg").read_bytes())
        assert enroll.handler(aws.event(key), context()) == OK
        assert aws.result(key)["error"]["code"] == "FACE_TOO_SMALL"
        assert embedded == []
