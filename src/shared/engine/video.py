"""Videos: recognize them by content, split them into segments, sample frames, merge appearances.

OpenCV (with its bundled FFmpeg) decodes, from a path or from any seekable binary file object
(io.BufferedIOBase, e.g. a view of a remote object that fetches only the byte ranges read); each
segment seeks to its own first frame, so segments can run in parallel on different workers without
decoding from the start, and read only their own part of the file (plus the container's index).
"""
from __future__ import annotations

import io
import itertools
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Union

import numpy as np

from shared import errors
from shared.errors import FaceError
from shared.engine.decode import is_heif

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
SNIFF_BYTES = 64  # what recognize reads to tell a video from an image


def sniff_container(head: bytes) -> str | None:
    """The video container named by a file's first bytes (at least 12), or None."""
    if is_heif(head):  # an iPhone or AVIF photo, not a video
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        return "mov" if brand == b"qt  " else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def looks_like_video(key: str, head: bytes) -> bool:
    """True when the content is a video container, or the name says video (so a bad one fails clearly)."""
    return sniff_container(head) is not None or key.lower().endswith(VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: frames per second, frame count, duration and size."""

    fps: float
    frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


Source = Union[str, "os.PathLike[str]", io.BufferedIOBase]  # a video file's path, or a seekable binary stream


def _open(source: Source):
    import cv2  # imported here: only video work needs OpenCV

    if isinstance(source, (str, os.PathLike)):
        capture = cv2.VideoCapture(os.fspath(source))
    else:  # FFmpeg reads the stream through read() and seek(): only what it needs
        source.seek(0)
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [])
    if not capture.isOpened():
        raise FaceError(errors.NOT_A_VIDEO, "the file is not a video that can be decoded")
    return capture


def probe_video(source: Source) -> VideoInfo:
    """Read a video's header; FaceError NOT_A_VIDEO or EMPTY_VIDEO when there is nothing to decode."""
    import cv2

    capture = _open(source)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if not fps or not math.isfinite(fps) or fps <= 0 or width <= 0 or height <= 0:
            raise FaceError(errors.NOT_A_VIDEO, "the file has no decodable video stream")
        if frames <= 0 or not capture.grab():
            raise FaceError(errors.EMPTY_VIDEO, "the video has no frames")
        return VideoInfo(fps=float(fps), frames=frames, width=width, height=height)
    finally:
        capture.release()


def check_frame_size(width: int, height: int, max_pixels: int) -> None:
    """FaceError TOO_MANY_PIXELS when frames of `width`x`height` are over `max_pixels` (as photos are)."""
    if width * height > max_pixels:
        raise FaceError(errors.TOO_MANY_PIXELS, f"the video's frames are {width}x{height} ({width * height:,} pixels); "
                                                f"the limit is {max_pixels:,}")


def verified_length(source: Source, info: VideoInfo, before_grab: Callable[[], None] | None = None) -> VideoInfo:
    """`info` with the frame count the file really holds: a header can claim any duration (a few kB
    announcing 6 hours), so the frame a second before the claimed end is decoded; when it is not
    there, the last frame that is is found by bisection (each step one seek), and the count ends
    there. EMPTY_VIDEO when not even the first frame decodes."""
    tolerance = max(1, math.ceil(info.fps))  # headers that round their duration up by a frame or two are honest
    check = max(0, info.frames - tolerance)
    if _decodes(source, check, before_grab):
        return info
    low, high = -1, check  # frame `low` decodes (-1: none known yet), frame `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if _decodes(source, middle, before_grab):
            low = middle
        else:
            high = middle
    if low < 0:
        raise FaceError(errors.EMPTY_VIDEO, "the video has no frames that can be decoded")
    return VideoInfo(fps=info.fps, frames=low + 1, width=info.width, height=info.height)


def _decodes(source: Source, index: int, before_grab: Callable[[], None] | None) -> bool:
    """True when frame `index` can be read (a seek, then one grab)."""
    import cv2

    if before_grab is not None:
        before_grab()
    capture = _open(source)
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        return bool(capture.grab())
    finally:
        capture.release()


def plan_segments(info: VideoInfo, segment_s: float) -> list[tuple[int, int]]:
    """[first_frame, end_frame) of each segment of about `segment_s` seconds."""
    per_segment = max(1, round(segment_s * info.fps))
    return [(start, min(start + per_segment, info.frames)) for start in range(0, info.frames, per_segment)]


def sampled_frame_indices(info: VideoInfo, first: int, end: int, sample_fps: float) -> list[int]:
    """Frame numbers in [first, end) taken at `sample_fps`, on a grid shared by every segment."""
    step = max(1.0, info.fps / sample_fps)
    k = max(0, math.floor(first / step) - 1)
    indices = []
    while (index := round(k * step)) < end:
        if index >= first:
            indices.append(index)
        k += 1
    return indices


def read_frames(source: Source, indices: list[int], before_grab: Callable[[], None] | None = None,
                max_pixels: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) for each index (ascending), seeking to the first one only.

    `before_grab` is called before the seek and before each frame is decoded, sampled or not (it
    may raise to stop, e.g. near a deadline); a decoded frame over `max_pixels` raises FaceError
    TOO_MANY_PIXELS before it is converted."""
    import cv2

    if not indices:
        return
    capture = _open(source)
    try:
        if before_grab is not None:
            before_grab()
        capture.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
        position = indices[0]
        wanted = iter(indices)
        target = next(wanted)
        while True:
            if before_grab is not None:
                before_grab()
            if not capture.grab():
                return
            if position == target:
                ok, frame = capture.retrieve()
                if ok:
                    if max_pixels is not None:
                        check_frame_size(frame.shape[1], frame.shape[0], max_pixels)
                    yield position, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                target = next(wanted, None)
                if target is None:
                    return
            position += 1
    finally:
        capture.release()


def appearances(frames: list[dict], sample_interval_s: float, duration_s: float) -> list[dict]:
    """Per person, the [start_s, end_s] intervals in which they are seen in consecutive samples;
    then per unknown cluster (`person` None, `cluster` its id) when faces carry one.

    `frames` are {"t": seconds, "faces": [{"person": name or None, "cluster"?: id, ...}]}; samples further apart than
    1.5 sampling intervals start a new interval; each interval lasts until its last sample's interval ends.
    """
    seen: dict[tuple[str, str], list[float]] = {}
    for frame in sorted(frames, key=lambda f: f["t"]):
        who = {("person", f["person"]) if f.get("person") else ("cluster", f["cluster"])
               for f in frame["faces"] if f.get("person") or f.get("cluster")}
        for label in who:
            seen.setdefault(label, []).append(frame["t"])
    result = []
    for kind, name in sorted(seen, key=lambda label: (label[0] != "person", label[1])):
        intervals: list[list[float]] = []
        for t in seen[(kind, name)]:
            if intervals and t - intervals[-1][1] <= 1.5 * sample_interval_s:
                intervals[-1][1] = t
            else:
                intervals.append([t, t])
        closed = [[round(a, 3), round(min(b + sample_interval_s, duration_s), 3)] for a, b in intervals]
        result.append({"person": name, "intervals": closed} if kind == "person"
                      else {"person": None, "cluster": name, "intervals": closed})
    return result


def with_screen_time(found: list[dict]) -> list[dict]:
    """`appearances` entries with, per person, `seconds` on screen (the intervals' total) and the
    `first_s` and `last_s` seconds they are seen (start of the first interval, end of the last)."""
    out = []
    for entry in found:
        spans = entry["intervals"]
        seconds = round(sum(b - a for a, b in spans), 3)
        out.append({**entry, "seconds": seconds, "first_s": spans[0][0] if spans else None,
                    "last_s": spans[-1][1] if spans else None})
    return out


FRAME_BATCH = 4  # sampled frames detected together (one ONNX Runtime run of the CNN)


def recognize_frames(
    source: Source, info: VideoInfo, indices: list[int], gallery, cfg, before_frame: Callable[[], None] | None = None,
    unknown: list[tuple[int, int, np.ndarray]] | None = None, before_grab: Callable[[], None] | None = None,
) -> list[dict]:
    """{"t", "faces": [{"box", "person", "distance"}]} for each sampled frame, matched against `gallery`
    (a face also has "nearest_taken" and "review" when true; see shared/pipeline/results.py).

    Frames are analysed FRAME_BATCH at a time; `before_frame` is called before each frame is
    analysed and `before_grab` before each frame is decoded (read_frames); either may raise to
    stop, e.g. near a deadline. Frames over `cfg.max_pixels` raise TOO_MANY_PIXELS. With `unknown`,
    each face that matches nobody is appended to it as (frame position, face position, embedding)."""
    from shared.engine.faces import find_faces_batch
    from shared.engine.matching import identify, needs_review, one_face_per_person

    check_frame_size(info.width, info.height, cfg.max_pixels)
    frames = []
    for chunk in itertools.batched(read_frames(source, indices, before_grab, cfg.max_pixels), FRAME_BATCH):
        for _ in chunk:
            if before_frame is not None:
                before_frame()
        for (index, _), faces in zip(chunk, find_faces_batch([image for _, image in chunk], cfg)):
            matches = identify(np.array([f.embedding for f in faces]), gallery, cfg.threshold, cfg.top_k) if faces else []
            if cfg.one_face_per_person:
                matches = one_face_per_person(matches, cfg.threshold)
            if unknown is not None:
                unknown.extend((len(frames), i, f.embedding) for i, (f, m) in enumerate(zip(faces, matches)) if m.person is None)
            frames.append({
                "t": round(index / info.fps, 3),
                "faces": [
                    {"box": f.box.to_dict(), "person": m.person,
                     "distance": None if m.distance is None else round(m.distance, 4),
                     **({"nearest_taken": True} if m.nearest_taken else {}),
                     **({"review": True} if needs_review(m.distance, cfg.threshold, cfg.review_band) else {})}
                    for f, m in zip(faces, matches)
                ],
            })
    return frames
