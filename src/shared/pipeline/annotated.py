"""A photo's annotated copy (`results/<source key>.jpg`, keys.annotated_key): its faces' boxes and names.

- `render`, `store`: recognition draws it from the faces of the result it is writing, then writes it.
- `redraw`: after a result is edited (a correction, its undo, an added face), drawn again from the
  edited faces, so the picture never shows a name the result no longer gives (a `--not obama`
  correction must not leave "obama" on the copy). Only a result that has one (`annotated`), and
  only on the very bytes the result describes: when the source was replaced since, its own
  recognition draws the new copy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from shared.aws import s3
from shared.config import Config
from shared.engine.annotate import annotate
from shared.engine.decode import decode_image
from shared.engine.faces import Box
from shared.pipeline import keys


def render(image: np.ndarray, faces: list[dict[str, Any]]) -> bytes:
    """The annotated copy of `image` with `faces` (result entries) drawn, as JPEG bytes."""
    boxes = [Box(*(int(f["box"][k]) for k in ("left", "top", "width", "height"))) for f in faces]
    return annotate(image, boxes, [f.get("person") for f in faces])


def store(bucket: str, source: str, jpeg: bytes) -> str:
    """Write `source`'s annotated copy; its key."""
    key = keys.annotated_key(source)
    s3.put_object(bucket, key, jpeg, "image/jpeg")
    return key


def source_image(config: Config, bucket: str, source: str, etag: str) -> np.ndarray | None:
    """The decoded bytes of `source` whose ETag is `etag`; None when they are gone or were replaced."""
    try:
        with s3.open_object(bucket, source, if_match=etag or None) as (_, body):
            return decode_image(body.read(), config.engine)
    except (s3.ObjectMissing, s3.ObjectChanged):
        return None


def redraw(config: Config, bucket: str, doc: dict[str, Any], image: np.ndarray | None = None) -> bool:
    """Draw the photo result `doc`'s annotated copy again from its faces (on `image`, else the
    source's bytes the result describes); whether it was drawn."""
    if not doc.get("annotated") or doc.get("media") == "video":
        return False
    if image is None:
        image = source_image(config, bucket, doc["source"], doc.get("source_etag") or "")
        if image is None:
            return False  # replaced (or deleted) since: the new bytes' recognition draws theirs
    store(bucket, doc["source"], render(image, [f for f in doc.get("faces") or [] if isinstance(f, dict)]))
    return True
