"""The video a worker reads: a ranged view of the S3 object, never a download of the whole file.

Plan checks the object (size, ETag) with one listing, then probes it through ranged GETs: only the
container's header and index are read. A segment opens the same view and FFmpeg seeks to its first
frame: its S3 bytes are its own frames plus the index. The view of the last video is kept for the
process's next message (a Lambda execution environment lives on between invocations): segments of
one video that reach the same worker fetch the index blocks once.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from shared import errors
from shared.aws import s3
from shared.aws.s3_ranges import RangedObject
from shared.errors import FaceError

_kept: dict[str, Any] = {}  # {"id": (bucket, key, etag), "video": RangedObject}


def check_source(bucket: str, key: str, etag: str, max_bytes: int) -> int:
    """The video's size, after the plan's checks: OBJECT_NOT_FOUND (gone or replaced), EMPTY_VIDEO,
    VIDEO_TOO_LARGE. One listing (s3:ListBucket on queries/*); nothing is downloaded."""
    found = s3.stat(bucket, key)
    if found is None:
        raise FaceError(errors.OBJECT_NOT_FOUND, f"s3://{bucket}/{key} does not exist")
    if etag and found.etag != etag:
        raise FaceError(errors.OBJECT_NOT_FOUND,
                        f"s3://{bucket}/{key} was replaced (its ETag is no longer {etag}); the new upload is a job of its own")
    if found.size == 0:
        raise FaceError(errors.EMPTY_VIDEO, "the video file is empty (0 bytes)")
    if found.size > max_bytes:
        raise FaceError(errors.VIDEO_TOO_LARGE, f"the video is {found.size} bytes, more than the {max_bytes} allowed")
    return found.size


def video_view(bucket: str, key: str, etag: str, size: int | None, block: int) -> RangedObject:
    """The ranged view of the video (the process's kept one when it is the same object and ETag)."""
    ident = (bucket, key, etag)
    kept = _kept.get("video")
    if _kept.get("id") == ident and kept is not None and kept.error is None and kept.block == block:
        kept.bytes_read = kept.requests = 0  # counted per message
        return kept
    video = RangedObject(bucket, key, etag, size, block=block)
    _kept.update(id=ident, video=video)
    return video


@contextmanager
def reading(video: RangedObject) -> Iterator[RangedObject]:
    """Decode inside: a failed ranged GET surfaces as itself (retried) or as OBJECT_NOT_FOUND (the
    video was deleted or replaced: permanent), never as the decoder's 'not a video'."""
    try:
        with video.reading():
            yield video
    except s3.ObjectMissing as exc:
        drop_local_copy()
        raise FaceError(errors.OBJECT_NOT_FOUND, str(exc)) from None
    except s3.ObjectChanged as exc:
        drop_local_copy()
        raise FaceError(errors.OBJECT_NOT_FOUND, f"{exc}; the new upload is a job of its own") from None
    except BaseException:
        if video.error is not None:
            drop_local_copy()
        raise


def drop_local_copy() -> None:
    """Forget the kept view of the last video (the next message fetches what it reads again)."""
    _kept.clear()
