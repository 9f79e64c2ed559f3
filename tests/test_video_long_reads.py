"""Reading a video from S3 by byte ranges (shared/aws/s3_ranges.py, pipeline/video_copy.py) against
moto's server: the same frames as from the file, only the bytes needed, and failures that say
what happened (a replaced or deleted video, a throttled GET) rather than "not a video"."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from support.faults import FaultProxy, get_of
from support.moto import MotoResources, moto_resources

from shared import errors
from shared.aws.s3_ranges import RangedObject
from shared.engine.video import probe_video, read_frames
from shared.errors import FaceError
from shared.pipeline.video_copy import drop_local_copy, reading, video_view

CLIP = "video/short_hamilton_clip.mp4"
KEY = "queries/clip.mp4"
BLOCK = 32768


@pytest.fixture
def clip_in_s3(moto_endpoint: str, faces_dir: Path) -> Iterator[tuple[MotoResources, str, bytes]]:
    with moto_resources(moto_endpoint) as aws:
        data = (faces_dir / CLIP).read_bytes()
        etag = aws.put(KEY, data)
        drop_local_copy()
        yield aws, etag, data
        drop_local_copy()


def test_frames_read_by_ranges_are_the_files_frames(clip_in_s3, faces_dir: Path) -> None:
    aws, etag, data = clip_in_s3
    path = str(faces_dir / CLIP)
    view = RangedObject(aws.bucket, KEY, etag, block=BLOCK)
    with view.reading():
        assert probe_video(view) == probe_video(path)
    probed = view.bytes_read
    assert probed < len(data) / 10  # the header and the index
    indices = [250, 260, 270]  # the last second of 9.18
    with view.reading():
        remote = list(read_frames(view, indices))
    local = list(read_frames(path, indices))
    assert [i for i, _ in remote] == indices == [i for i, _ in local]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(remote, local))
    segment = view.bytes_read - probed  # the last 11% of the clip: from its keyframe (frame 250) on
    assert segment < len(data) / 5, (probed, segment, len(data))
    assert view.requests * BLOCK >= view.bytes_read and view.size == len(data)


def test_a_video_replaced_while_read_is_gone_not_broken(clip_in_s3, faces_dir: Path) -> None:
    aws, etag, _ = clip_in_s3
    view = video_view(aws.bucket, KEY, etag, None, BLOCK)
    with reading(view):
        probe_video(view)
    aws.put(KEY, (faces_dir / "seed/john0.jpg").read_bytes())
    with pytest.raises(FaceError) as caught, reading(view):
        list(read_frames(view, [200]))  # blocks not read yet: If-Match fails
    assert caught.value.code == errors.OBJECT_NOT_FOUND and "was replaced" in caught.value.message
    aws.delete(KEY)
    with pytest.raises(FaceError) as caught, reading(video_view(aws.bucket, KEY, "", None, BLOCK)) as gone:
        probe_video(gone)
    assert caught.value.code == errors.OBJECT_NOT_FOUND and "does not exist" in caught.value.message


def test_a_throttled_read_is_raised_for_a_retry(clip_in_s3, monkeypatch: pytest.MonkeyPatch) -> None:
    aws, etag, _ = clip_in_s3
    with FaultProxy(aws.endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        proxy.fail(1, get_of(KEY))
        view = video_view(aws.bucket, KEY, etag, None, BLOCK)
        with pytest.raises(Exception) as caught, reading(view):
            probe_video(view)
        assert not isinstance(caught.value, FaceError), caught.value  # not NOT_A_VIDEO: worth a retry
        assert "SlowDown" in str(caught.value) and len(proxy.injected) == 1
        again = video_view(aws.bucket, KEY, etag, None, BLOCK)  # the failed view is not kept
        assert again is not view
        with reading(again):
            assert probe_video(again).frames == 275
