"""Merging one person into another (`lambdaface merge FROM INTO`, `rename`): what is kept by a
person's name moves, and where FROM's images go under `models/INTO/`.

The images move through S3 (the client copies, then deletes: enrolling and forgetting run as for any
upload); this module moves the records and names the copies. Every step can be run again.
"""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import Iterator

from shared.config import Config
from shared.pipeline import corrections, people_index


def move_records(config: Config, from_name: str, into_name: str) -> int:
    """Move what is kept under FROM's name to INTO: the person index's entries and the correction
    records; how many moved. Idempotent: run again, it moves what is left. Called before FROM's
    images are deleted (the forget of FROM's last face deletes what is left of FROM's records)."""
    return people_index.move(config.pipeline, from_name, into_name) + corrections.move_person(config, from_name, into_name)


def copy_names(file_name: str, from_name: str) -> Iterator[str]:
    """Where FROM's image `file_name` may go under models/INTO/, first choice first: its own name,
    then `<stem>-<FROM><suffix>`, `<stem>-<FROM>-2<suffix>`, ... (the first free one, or the one that
    holds the same bytes already, is taken: INTO's own image of that name is never overwritten)."""
    path = PurePosixPath(file_name)
    yield file_name
    yield f"{path.stem}-{from_name}{path.suffix}"
    n = 2
    while True:
        yield f"{path.stem}-{from_name}-{n}{path.suffix}"
        n += 1
