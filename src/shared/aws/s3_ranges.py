"""An S3 object as a seekable, read-only file that downloads only the byte ranges read.

A video decoder (OpenCV's FFmpeg through io.BufferedIOBase) reads a container's header and index,
then the frames it needs: each miss fetches one aligned block with a ranged GET (`If-Match` the
ETag, so every block comes from the same upload), and the last few blocks are kept. What was
fetched is counted (`bytes_read`, `requests`) so callers can report it.

A decoder calls read() from native code, which cannot carry a Python exception through: a failed
GET is kept in `error`, the read answers end of file, and `raise_error()` (or `reading()`) raises it.
"""
from __future__ import annotations

import io
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from shared.aws.clients import client, error_code
from shared.aws.s3 import MISSING_CODES, ObjectChanged, ObjectMissing

BLOCK = 1 << 20  # bytes per ranged GET (one S3 request per MiB read)
KEPT_BLOCKS = 16  # blocks kept: the container's index is read again after every seek


class RangedObject(io.BufferedIOBase):
    """s3://bucket/key at ETag `etag` (of `size` bytes, when known), read through ranged GETs."""

    def __init__(self, bucket: str, key: str, etag: str | None, size: int | None = None,
                 block: int = BLOCK, kept_blocks: int = KEPT_BLOCKS) -> None:
        super().__init__()
        self.bucket, self.key, self.etag, self.size = bucket, key, etag or None, size
        self.block, self.kept_blocks = max(4096, int(block)), max(2, int(kept_blocks))
        self.position = 0
        self.bytes_read = 0
        self.requests = 0
        self.error: BaseException | None = None
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    # --- io.BufferedIOBase ------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self.position + offset
        elif whence == io.SEEK_END:
            target = self._size() + offset
        else:
            raise ValueError(f"whence {whence} is not SEEK_SET, SEEK_CUR or SEEK_END")
        self.position = max(0, target)
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        if self.error is not None:
            return b""
        end = self._size() if size is None or size < 0 else min(self.position + size, self._size())
        parts = []
        while self.position < end:
            data = self._block(self.position // self.block)
            if not data:
                break
            offset = self.position % self.block
            chunk = data[offset : offset + end - self.position]
            if not chunk:
                break
            parts.append(chunk)
            self.position += len(chunk)
        return b"".join(parts)

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    # --- errors ---------------------------------------------------------------------------------

    def raise_error(self) -> None:
        """Raise the failure a read met (ObjectMissing, ObjectChanged or the AWS error), if any."""
        if self.error is not None:
            raise self.error

    @contextmanager
    def reading(self) -> Iterator["RangedObject"]:
        """Decode inside: a failed GET is raised on the way out, before whatever the decoder made of it."""
        try:
            yield self
        except BaseException:
            self.raise_error()
            raise
        self.raise_error()

    # --- blocks ---------------------------------------------------------------------------------

    def _size(self) -> int:
        if self.size is None:
            self._block(0)
        return self.size or 0

    def _block(self, index: int) -> bytes:
        found = self._blocks.get(index)
        if found is not None:
            self._blocks.move_to_end(index)
            return found
        if self.error is not None or (self.size is not None and index * self.block >= self.size):
            return b""
        try:
            data = self._get(index * self.block, (index + 1) * self.block - 1)
        except Exception as exc:  # kept: native code between us and the caller cannot carry it
            self.error = exc
            return b""
        self._blocks[index] = data
        while len(self._blocks) > self.kept_blocks:
            self._blocks.popitem(last=False)
        return data

    def _get(self, first: int, last: int) -> bytes:
        extra = {"IfMatch": f'"{self.etag}"'} if self.etag else {}
        try:
            response = client("s3").get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={first}-{last}", **extra)
        except Exception as exc:
            code = error_code(exc)
            if code == "InvalidRange":  # past the end (or an empty object)
                self.size = self.size if self.size is not None else 0
                return b""
            if code in ("PreconditionFailed", "412"):
                raise ObjectChanged(f"s3://{self.bucket}/{self.key} was replaced (its ETag is no longer {self.etag})") from None
            if code in MISSING_CODES:
                raise ObjectMissing(f"s3://{self.bucket}/{self.key} does not exist") from None
            raise
        with response["Body"] as body:
            data = body.read()
        total = str(response.get("ContentRange", "")).rpartition("/")[2]
        if self.size is None and total.isdigit():
            self.size = int(total)
        self.requests += 1
        self.bytes_read += len(data)
        return data
