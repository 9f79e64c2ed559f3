"""The bucket's layout: which key prefix means what, and where each job's outputs go.

    models/<person>/<file>      an enrollment image (upload: enroll; delete: forget)
    queries/<path>              a photo or video to recognize
    queries/api/<date>/<id>     a photo the synchronous API stored (store=true): its job ran in the call
    results/<source key>.json   the job's result document; results/<source key>.jpg the annotated copy
    work/segments/<job>/<n>.json  a video segment's partial result, until the merge (lifecycle-expired)

The only code that knows these formats: the client, the watcher and the local stack use it too.
Pure: no engine, no AWS.
"""
from __future__ import annotations

import re

from shared import errors

MODELS_PREFIX = "models/"
QUERIES_PREFIX = "queries/"
RESULTS_PREFIX = "results/"
API_PREFIX = f"{QUERIES_PREFIX}api/"  # the synchronous API's stored photos (their S3 events are not jobs)
WORK_PREFIX = "work/segments/"
PERSON_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Longest source key accepted (UTF-8 bytes). S3 keys and DynamoDB key attributes both stop at 1024
# bytes; what is derived from a source key must fit too: `results/<key>.json` (+13) and the unknown
# store's face id `<key>#<etag>#<n>` (+ up to ~60 for a multipart ETag and a video track's n).
MAX_KEY_BYTES = 900
S3_KEY_BYTES = 1024  # S3's own limit on a key


def check_key_length(key: str) -> None:
    """FaceError INVALID_KEY when `key` is longer than MAX_KEY_BYTES (counted in UTF-8 bytes)."""
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise errors.FaceError(errors.INVALID_KEY,
                               f"key {shorten(key)!r} is {size} bytes long; at most {MAX_KEY_BYTES} bytes are accepted")


def fits_s3(key: str) -> bool:
    """Whether S3 can store an object at `key` (a derived key of an over-long source may not)."""
    return len(key.encode("utf-8")) <= S3_KEY_BYTES


def result_key(source_key: str) -> str:
    """`results/<source key>.json`."""
    return f"{RESULTS_PREFIX}{source_key}.json"


def annotated_key(source_key: str) -> str:
    """`results/<source key>.jpg`, the annotated copy written next to the result."""
    return f"{RESULTS_PREFIX}{source_key}.jpg"


def source_of(name: str) -> str:
    """A job as named on a command line (source key, s3:// URL or result key) -> its source key."""
    if name.startswith("s3://"):
        _, _, name = name[5:].partition("/")
    if name.startswith(RESULTS_PREFIX) and name.endswith(".json"):
        name = name[len(RESULTS_PREFIX) : -len(".json")]
    return name


def segment_id(index: int) -> str:
    """A video segment's index as stored in keys and job records (sortable)."""
    return f"{index:05d}"


def partial_key(job_id: str, index: int) -> str:
    """Where segment `index` of video job `job_id` keeps its frames until the merge."""
    return f"{WORK_PREFIX}{job_id}/{segment_id(index)}.json"


def person_prefix(person: str) -> str:
    """`models/<person>/`: every enrollment image of one person."""
    return f"{MODELS_PREFIX}{person}/"


def is_query_key(key: str) -> bool:
    """True for `queries/<path>` (not a folder placeholder)."""
    return key.startswith(QUERIES_PREFIX) and not key.endswith("/")


def parse_model_key(key: str) -> tuple[str, str]:
    """(person, file name) of a `models/<person>/<file>` key, or FaceError INVALID_KEY / INVALID_PERSON."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != MODELS_PREFIX or not parts[2]:
        why = " (a person's name cannot contain '/')" if len(parts) > 3 and parts[0] + "/" == MODELS_PREFIX else ""
        raise errors.FaceError(errors.INVALID_KEY, f"expected models/<person>/<file>, got {shorten(key)!r}{why}")
    person = parts[1]
    if not PERSON_PATTERN.fullmatch(person) or ".." in person:
        why = f" (it has {len(person)} characters)" if len(person) > 64 else ""
        raise errors.FaceError(
            errors.INVALID_PERSON,
            f"person {shorten(person)!r} must be 1-64 letters, digits, '_', '-' or '.', without '..'{why}",
        )
    return person, parts[2]


def shorten(text: str, most: int = 80) -> str:
    """`text` cut to `most` characters for a message (keys can be 1024 bytes long)."""
    return text if len(text) <= most else text[: most - 1] + "…"
