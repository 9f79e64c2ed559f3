"""Gallery snapshots in S3: every live face at one sequence number, ready to adopt without parsing.

`gallery/snapshots/<seq, 20 digits>-<random>/` holds `embeddings.f32` (rows x 128 float32 LE),
`persons.i32` (person id per row, int32 LE) and `index.json` (`seq`, `rows`, `names`: person id
-> name, `keys`: row -> image key). Readers fetch `embeddings.f32` with parallel ranged GETs straight
into one array. `gallery/` triggers nothing. A snapshot is deleted as soon as a newer one is
published (see gallery_cache.compact), so a forgotten face outlives its deletion in no snapshot.
"""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from shared.aws.clients import client
from shared.engine.matching import DIM, Gallery

PREFIX = "gallery/snapshots/"
RANGE_BYTES = 64 << 20  # one ranged GET (8 in parallel)
PART_ROWS = 65536  # 32 MiB multipart parts
READERS = 8


def new_prefix(seq: int, root: str = PREFIX) -> str:
    """A new snapshot's folder under `root` (the gallery's, or the unknown faces' store)."""
    return f"{root}{seq:020d}-{uuid.uuid4().hex[:8]}/"


def write(bucket: str, prefix: str, gallery: Gallery, seq: int) -> int:
    """Write the gallery's live faces under `prefix`; returns the row count."""
    rows, person_ids, keys = gallery.live()
    s3 = client("s3")
    _write_rows(bucket, prefix + "embeddings.f32", gallery.embeddings, rows)
    s3.put_object(Bucket=bucket, Key=prefix + "persons.i32", Body=person_ids.astype("<i4").tobytes())
    index = {"seq": seq, "rows": int(rows.size), "names": gallery.names, "keys": keys}
    s3.put_object(Bucket=bucket, Key=prefix + "index.json", Body=json.dumps(index).encode(), ContentType="application/json")
    return int(rows.size)


def _write_rows(bucket: str, key: str, embeddings: np.ndarray, rows: np.ndarray) -> None:
    """embeddings[rows] as one object, in 32 MiB parts (never a second copy of the whole matrix)."""
    s3 = client("s3")
    if rows.size <= PART_ROWS:
        s3.put_object(Bucket=bucket, Key=key, Body=embeddings[rows].astype("<f4").tobytes())
        return
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        parts = []
        for n, start in enumerate(range(0, rows.size, PART_ROWS), start=1):
            body = embeddings[rows[start:start + PART_ROWS]].astype("<f4").tobytes()
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
            parts.append({"PartNumber": n, "ETag": etag})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        raise


def read(bucket: str, prefix: str, spare: int = 4096) -> tuple[Gallery, int]:
    """The snapshot under `prefix` as a Gallery (with `spare` free rows), and its sequence number."""
    s3 = client("s3")
    index = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "index.json")["Body"].read().decode())
    n = int(index["rows"])
    embeddings = np.empty((n + spare, DIM), dtype=np.float32)
    _read_into(bucket, prefix + "embeddings.f32", embeddings[:n].reshape(-1).view(np.uint8))
    person_ids = np.frombuffer(s3.get_object(Bucket=bucket, Key=prefix + "persons.i32")["Body"].read(), dtype="<i4")
    if person_ids.size != n or len(index["keys"]) != n:
        raise ValueError(f"snapshot {prefix} is inconsistent")
    gallery = Gallery.from_arrays(embeddings, person_ids.astype(np.int32), index["names"], index["keys"], spare=0)
    return gallery, int(index["seq"])


def _read_into(bucket: str, key: str, out: np.ndarray) -> None:
    """Fill `out` (uint8) with the object, in parallel ranged GETs."""
    s3 = client("s3")
    size = out.size

    def fetch(start: int) -> None:
        end = min(size, start + RANGE_BYTES) - 1
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        view, at = memoryview(out)[start:end + 1], 0
        while at < len(view):
            chunk = body.read(min(1 << 20, len(view) - at))
            if not chunk:
                raise IOError(f"s3://{bucket}/{key} ended early at {start + at}")
            view[at:at + len(chunk)] = chunk
            at += len(chunk)

    if size == 0:
        return
    with ThreadPoolExecutor(READERS) as pool:
        list(pool.map(fetch, range(0, size, RANGE_BYTES)))


def delete(bucket: str, prefix: str) -> None:
    """Delete one snapshot's objects (missing ones are fine)."""
    s3 = client("s3")
    for name in ("embeddings.f32", "persons.i32", "index.json"):
        s3.delete_object(Bucket=bucket, Key=prefix + name)


def prefixes(bucket: str, root: str = PREFIX) -> dict[str, int]:
    """Every snapshot under `root` (prefix -> sequence number), complete or not."""
    found: dict[str, int] = {}
    pages = client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root)
    for page in pages:
        for obj in page.get("Contents", []):
            name = obj["Key"][len(root):].split("/", 1)[0]
            found[f"{root}{name}/"] = int(name.split("-", 1)[0])
    return found


def pointer(seq: int, bucket: str, prefix: str, rows: int) -> dict[str, Any]:
    return {"seq": seq, "bucket": bucket, "prefix": prefix, "rows": rows}
