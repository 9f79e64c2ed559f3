"""Errors with stable codes that end up in a job's result and state."""
from __future__ import annotations


class FaceError(Exception):
    """A permanent, user-visible failure: retrying the same input gives the same answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The `error` object of a result document."""
        return {"code": self.code, "message": self.message}


class TransientError(Exception):
    """A failure worth retrying (a throttled or failed AWS call)."""


EMPTY_FILE = "EMPTY_FILE"
FILE_TOO_LARGE = "FILE_TOO_LARGE"
NOT_AN_IMAGE = "NOT_AN_IMAGE"
UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
TRUNCATED_IMAGE = "TRUNCATED_IMAGE"
TOO_MANY_PIXELS = "TOO_MANY_PIXELS"
IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
NO_FACE = "NO_FACE"
MULTIPLE_FACES = "MULTIPLE_FACES"
FACE_TOO_SMALL = "FACE_TOO_SMALL"
INVALID_PERSON = "INVALID_PERSON"
INVALID_KEY = "INVALID_KEY"
UNREADABLE_FILE = "UNREADABLE_FILE"
NOT_A_VIDEO = "NOT_A_VIDEO"
EMPTY_VIDEO = "EMPTY_VIDEO"
VIDEO_TOO_LONG = "VIDEO_TOO_LONG"
VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"
SEGMENT_FAILED = "SEGMENT_FAILED"
