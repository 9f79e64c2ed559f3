"""Video decoding, segmenting and merging on the real clip and on small generated videos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from support.video import claiming_duration, numbered_frames, write_video

from shared import errors
from shared.config import EngineConfig, VideoConfig
from shared.errors import FaceError
from shared.engine.matching import Gallery
from shared.engine.video import (VideoInfo, appearances, looks_like_video, plan_segments, probe_video, read_frames,
                          recognize_frames, sampled_frame_indices, sniff_container, verified_length)

CLIP = "video/short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def clip(faces_dir) -> str:
    return str(faces_dir / CLIP)


def test_probe_the_clip(clip):
    info = probe_video(clip)
    assert info.frames == 275 and info.fps == pytest.approx(29.97) and (info.width, info.height) == (640, 360)
    assert info.duration_s == pytest.approx(9.18, abs=0.01)


@pytest.mark.parametrize("suffix, fourcc, container", [(".mp4", "mp4v", "mp4"), (".avi", "MJPG", "avi"),
                                                       (".mkv", "MJPG", "mkv")])
def test_containers_are_recognised_by_content(tmp_path, suffix, fourcc, container):
    path = tmp_path / f"clip{suffix}"
    write_video(path, numbered_frames(30), fps=10.0, fourcc=fourcc)
    head = path.read_bytes()[:64]
    assert sniff_container(head) == container
    assert looks_like_video("queries/no-extension", head)
    assert probe_video(str(path)).frames == 30


def test_photos_are_not_videos(faces_dir):
    head = (faces_dir / "seed/john0.jpg").read_bytes()[:64]
    assert sniff_container(head) is None and not looks_like_video("queries/john0.jpg", head)
    assert looks_like_video("queries/broken.MOV", b"garbage")


@pytest.mark.parametrize("brand", [b"heic", b"avif"])
def test_heic_and_avif_photos_are_not_videos(brand):
    head = b"\x00\x00\x00\x1cftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(40)
    assert sniff_container(head) is None
    assert not looks_like_video("queries/IMG_0001.HEIC", head)
    assert sniff_container(b"\x00\x00\x00\x20ftypisom" + bytes(40)) == "mp4"


def test_a_text_file_named_mp4_is_not_a_video(tmp_path):
    path = tmp_path / "fake.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(FaceError) as caught:
        probe_video(str(path))
    assert caught.value.code == errors.NOT_A_VIDEO


def test_a_zero_length_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(FaceError) as caught:
        probe_video(str(path))
    assert caught.value.code in (errors.NOT_A_VIDEO, errors.EMPTY_VIDEO)


def test_segments_cover_every_frame_once():
    info = VideoInfo(fps=29.97, frames=275, width=640, height=360)
    segments = plan_segments(info, 3.0)
    assert segments[0][0] == 0 and segments[-1][1] == 275
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    assert all(end - start <= 90 for start, end in segments)


@pytest.mark.parametrize("sample_fps", [1.0, 2.0, 3.0, 29.97, 60.0])
def test_segment_samples_are_the_same_as_sampling_the_whole_video(sample_fps):
    info = VideoInfo(fps=29.97, frames=275, width=640, height=360)
    whole = sampled_frame_indices(info, 0, info.frames, sample_fps)
    pieces = [i for start, end in plan_segments(info, 2.5) for i in sampled_frame_indices(info, start, end, sample_fps)]
    assert pieces == whole
    assert len(whole) == pytest.approx(info.duration_s * min(sample_fps, info.fps), abs=1.5)


def test_seeking_gives_the_same_frames_as_decoding_from_the_start(clip):
    capture = cv2.VideoCapture(clip)
    sequential = []
    for _ in range(200):
        ok, frame = capture.read()
        sequential.append(frame)
    wanted = [150, 165, 180, 199]
    for index, frame in read_frames(clip, wanted):
        assert np.array_equal(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), sequential[index]), index
    assert [i for i, _ in read_frames(clip, wanted)] == wanted


def test_appearances_merge_consecutive_samples():
    frames = [{"t": t, "faces": [{"person": p} for p in people]} for t, people in
              [(0.0, ["a"]), (0.5, ["a", "b"]), (1.0, ["a"]), (1.5, []), (2.0, []), (2.5, ["a", None])]]
    assert appearances(frames, 0.5, 2.8) == [
        {"person": "a", "intervals": [[0.0, 1.5], [2.5, 2.8]]},
        {"person": "b", "intervals": [[0.5, 1.0]]},
    ]


def test_both_people_are_recognised_in_the_clip(clip, photos):
    """Lin speaks facing the camera; Alex is seen in profile, which the video's CNN detector finds."""
    gallery = Gallery.from_pairs([
        ("lin_manuel_miranda", photos.faces("people/lin_manuel_miranda/lin1.png")[0].embedding),
        ("alex_lacamoire", photos.faces("people/alex_lacamoire/alex3.png")[0].embedding),
    ])
    info = probe_video(clip)
    cfg = VideoConfig().engine(EngineConfig())
    frames = recognize_frames(clip, info, [30, 150], gallery, cfg)
    assert [f["t"] for f in frames] == [pytest.approx(1.001, abs=1e-3), pytest.approx(5.005, abs=1e-3)]
    assert [[face["person"] for face in f["faces"]] for f in frames] == [["alex_lacamoire"], ["lin_manuel_miranda"]]


# --- hostile headers and frames (issue 20) -------------------------------------------------------


def test_frames_over_the_pixel_limit_are_refused_like_photos(clip):
    """640x360 frames (230,400 pixels) against a limit of 200,000: TOO_MANY_PIXELS before any detection."""
    cfg = VideoConfig(max_pixels=200_000).engine(EngineConfig())
    with pytest.raises(FaceError) as refused:
        recognize_frames(clip, probe_video(clip), [30], Gallery.from_pairs([]), cfg)
    assert refused.value.code == errors.TOO_MANY_PIXELS
    assert refused.value.message == "the video's frames are 640x360 (230,400 pixels); the limit is 200,000"
    assert VideoConfig().engine(EngineConfig()).max_pixels == VideoConfig().max_pixels == 7680 * 4320


def test_a_decoded_frame_larger_than_its_header_says_is_refused(clip):
    """The header can understate the size: each decoded frame is checked too."""
    honest = probe_video(clip)
    lying = VideoInfo(fps=honest.fps, frames=honest.frames, width=64, height=36)
    cfg = VideoConfig(max_pixels=200_000).engine(EngineConfig())
    with pytest.raises(FaceError) as refused:
        recognize_frames(clip, lying, [30], Gallery.from_pairs([]), cfg)
    assert refused.value.code == errors.TOO_MANY_PIXELS and "640x360" in refused.value.message


def test_every_frame_decoded_is_inside_the_deadline(tmp_path):
    """`before_grab` runs before the seek and before each frame is decoded, sampled or not: frames
    0..30 sampled every 10 are 31 grabs, plus the seek."""
    path = write_video(tmp_path / "n.mp4", numbered_frames(40), 10.0)
    calls = []
    frames = list(read_frames(path, [0, 10, 20, 30], before_grab=lambda: calls.append(1)))
    assert [i for i, _ in frames] == [0, 10, 20, 30]
    assert len(calls) == 1 + 31


def test_a_forged_duration_is_cut_to_the_frames_the_file_holds(tmp_path):
    """A 2 s Matroska file whose header claims 50 minutes: the plan covers its 20 frames, not 30,000."""
    real = write_video(tmp_path / "real.mkv", numbered_frames(20), 10.0)
    forged = tmp_path / "forged.mkv"
    forged.write_bytes(claiming_duration(real.read_bytes(), 3000.0))
    claimed = probe_video(forged)
    assert claimed.frames == 30_000 and claimed.duration_s == 3000.0
    seeks = []
    held = verified_length(forged, claimed, lambda: seeks.append(1))
    assert held == VideoInfo(fps=10.0, frames=20, width=160, height=120)
    assert len(seeks) <= 16  # a bisection over 30,000 frames
    assert len(plan_segments(held, 3.0)) == 1
    assert [i for i, _ in read_frames(forged, [18, 19])] == [18, 19]


def test_an_honest_header_is_checked_with_one_seek(clip, tmp_path):
    seeks = []
    info = probe_video(clip)
    assert verified_length(clip, info, lambda: seeks.append(1)) == info and len(seeks) == 1
    real = write_video(tmp_path / "real.mkv", numbered_frames(20), 10.0)
    assert verified_length(real, probe_video(real)) == probe_video(real)
