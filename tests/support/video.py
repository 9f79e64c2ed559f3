"""Small videos for tests, written with OpenCV: photos shown one after another, or numbered frames."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, fourcc: str = "mp4v") -> Path:
    """Write BGR `frames` (all of one size) to `path` at `fps`; the path."""
    writer = None
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
                assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    assert writer is not None, "no frames"
    return path


def letterboxed(photo: Path, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A photo scaled to fit `size` (width, height), centred on black: a BGR frame."""
    image = Image.open(photo).convert("RGB")
    image.thumbnail(size)
    canvas = Image.new("RGB", size)
    canvas.paste(image, ((size[0] - image.width) // 2, (size[1] - image.height) // 2))
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


def photo_video(path: Path, photos: Sequence[Path], seconds: float, fps: float) -> Path:
    """An mp4 showing each photo (letterboxed into 640x480) for `seconds`, one after another."""
    frames = (frame for photo in photos for frame in [letterboxed(photo)] * round(seconds * fps))
    return write_video(path, frames, fps)


def numbered_frames(count: int, size: tuple[int, int] = (160, 120)) -> Iterable[np.ndarray]:
    """`count` frames, each a different grey with its number written on it."""
    width, height = size
    for i in range(count):
        frame = np.full((height, width, 3), i * 8 % 256, dtype=np.uint8)
        cv2.putText(frame, str(i), (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        yield frame


def claiming_duration(mkv: bytes, seconds: float) -> bytes:
    """A Matroska file whose header claims to last `seconds`, its frames untouched (a forged header:
    the Segment Info's Duration element, an 8-byte float in TimecodeScale units, rewritten)."""
    import struct

    scale_at = mkv.find(b"\x2a\xd7\xb1")  # TimecodeScale: FFmpeg writes 1,000,000 ns (durations in ms)
    assert scale_at >= 0 and mkv[scale_at + 3 : scale_at + 7] == b"\x83\x0f\x42\x40", "unexpected TimecodeScale"
    at = mkv.find(b"\x44\x89\x88")  # Duration, an 8-byte float
    assert at >= 0, "no 8-byte Duration element"
    return mkv[: at + 3] + struct.pack(">d", seconds * 1000.0) + mkv[at + 11 :]
