"""Every error code a job's result and state can carry, and the permanent error that carries one."""
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


# The input: what was uploaded cannot be used.
EMPTY_FILE = "EMPTY_FILE"
FILE_TOO_LARGE = "FILE_TOO_LARGE"
NOT_AN_IMAGE = "NOT_AN_IMAGE"
UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
TRUNCATED_IMAGE = "TRUNCATED_IMAGE"
TOO_MANY_PIXELS = "TOO_MANY_PIXELS"
IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
UNREADABLE_FILE = "UNREADABLE_FILE"
# The faces in it.
NO_FACE = "NO_FACE"
MULTIPLE_FACES = "MULTIPLE_FACES"
FACE_TOO_SMALL = "FACE_TOO_SMALL"
BAD_BOX = "BAD_BOX"  # a face given by its box (`add-face`, never a job): not inside the image, or too small
# The key it was uploaded at.
INVALID_PERSON = "INVALID_PERSON"
INVALID_KEY = "INVALID_KEY"
OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"  # the source was deleted (or replaced) before or while it was processed
# Videos.
NOT_A_VIDEO = "NOT_A_VIDEO"
EMPTY_VIDEO = "EMPTY_VIDEO"
VIDEO_TOO_LONG = "VIDEO_TOO_LONG"
VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"
SEGMENT_FAILED = "SEGMENT_FAILED"
# AWS refused a request in a way retrying cannot change (ValidationException, AccessDenied,
# ResourceNotFound, ...): the job fails on its first delivery instead of ending in the DLQ.
REQUEST_REFUSED = "REQUEST_REFUSED"
# Delivery: every attempt failed with errors worth retrying (the message then goes to the DLQ).
RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
