"""The video a worker processes, as a local file: downloaded once per process and video.

A Lambda execution environment keeps /tmp between invocations, so the segments of one video that
reach the same worker download it once. Only one video is kept: the next one replaces it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shared import errors
from shared.aws import s3
from shared.clock import timed
from shared.errors import FaceError

_copy: dict[str, Any] = {}  # this process's one downloaded video: {"id": (bucket, key, etag), "path": str}


def local_copy(bucket: str, key: str, etag: str, timings: dict[str, float], max_bytes: int | None = None) -> str:
    """A file holding the video (the same ETag), downloaded once per process and video."""
    ident = (bucket, key, etag)
    if _copy.get("id") == ident and os.path.exists(_copy["path"]):
        return _copy["path"]
    drop_local_copy()
    folder = Path(tempfile.gettempdir()) / "lambdaface-video"
    folder.mkdir(exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, suffix=Path(key).suffix[:8])
    with timed(timings, "download"):
        try:
            with os.fdopen(fd, "wb") as out, s3.open_object(bucket, key, if_match=etag or None) as (info, body):
                if info.size == 0:
                    raise FaceError(errors.EMPTY_VIDEO, "the video file is empty (0 bytes)")
                if max_bytes is not None and info.size > max_bytes:
                    raise FaceError(errors.VIDEO_TOO_LARGE, f"the video is {info.size} bytes, more than the {max_bytes} allowed")
                shutil.copyfileobj(body, out, 1 << 20)
        except BaseException as exc:
            Path(path).unlink(missing_ok=True)
            if isinstance(exc, s3.ObjectMissing):
                raise FaceError(errors.OBJECT_NOT_FOUND, str(exc)) from None
            if isinstance(exc, s3.ObjectChanged):
                raise FaceError(errors.OBJECT_NOT_FOUND, f"{exc}; the new upload is a job of its own") from None
            raise
    _copy.update(id=ident, path=path)
    return path


def drop_local_copy() -> None:
    """Delete the kept video file, if any (the next segment downloads its video again)."""
    path = _copy.pop("path", None)
    _copy.clear()
    if path:
        Path(path).unlink(missing_ok=True)
