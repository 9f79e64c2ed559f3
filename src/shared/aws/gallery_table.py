"""The face gallery in DynamoDB: one item per enrolled image (hash `person`, range `image_key`).

Each item holds `embedding` (128 float32, little-endian), `etag` and `enrolled_at`; never
images. A person is simply the set of their items: enrolling two images of one person at once
writes two items, and a person whose last item is removed is gone.

Every change also bumps a version counter kept in a sentinel item (`person` = "#meta", which no
valid person name can collide with). `load_gallery()` caches the matching-ready Gallery per
process and rebuilds it whenever the counter moved, so a recognition that starts after an
enrollment finished always sees it, at the cost of one strongly consistent GetItem per call.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from shared.aws import dynamo
from shared.aws.clients import client, error_code
from shared.engine.matching import Gallery

log = logging.getLogger(__name__)

META_PERSON, META_KEY = "#meta", "#version"
EMBEDDING_DTYPE = np.dtype("<f4")
EMBEDDING_BYTES = 128 * EMBEDDING_DTYPE.itemsize

_cache: dict[str, tuple[int, Gallery]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class GalleryFace:
    """One enrolled image of one person."""

    person: str
    image_key: str
    embedding: np.ndarray  # (128,) float32
    etag: str = ""
    enrolled_at: str = ""


def encode(embedding: np.ndarray) -> bytes:
    """128 float32 little-endian bytes."""
    array = np.asarray(embedding, dtype=EMBEDDING_DTYPE).reshape(-1)
    if array.size != 128:
        raise ValueError(f"an embedding has 128 values, not {array.size}")
    return array.tobytes()


def decode(data: bytes) -> np.ndarray:
    """The (128,) float32 embedding stored in `data`."""
    if len(data) != EMBEDDING_BYTES:
        raise ValueError(f"an embedding is {EMBEDDING_BYTES} bytes, not {len(data)}")
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)


class GalleryTable:
    """Enrolled faces, by person and source image key."""

    def __init__(self, name: str) -> None:
        self.name = name

    def put_face(self, face: GalleryFace) -> None:
        """Add (or replace) the face enrolled from `face.image_key`."""
        item = {
            "person": face.person,
            "image_key": face.image_key,
            "embedding": encode(face.embedding),
            "etag": face.etag,
            "enrolled_at": face.enrolled_at,
        }
        client("dynamodb").put_item(TableName=self.name, Item=dynamo.to_item(item))
        self.bump_version()

    def remove_face(self, person: str, image_key: str, etag: str | None = None) -> GalleryFace | None:
        """Remove the face enrolled from `image_key` (only if its etag is `etag`, when given).

        Returns the removed face, or None when there was none (or its etag differed)."""
        kwargs: dict[str, Any] = {}
        if etag is not None:
            kwargs = {
                "ConditionExpression": "#etag = :etag",
                "ExpressionAttributeNames": {"#etag": "etag"},
                "ExpressionAttributeValues": {":etag": {"S": etag}},
            }
        try:
            response = client("dynamodb").delete_item(
                TableName=self.name,
                Key={"person": {"S": person}, "image_key": {"S": image_key}},
                ReturnValues="ALL_OLD",
                **kwargs,
            )
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        old = response.get("Attributes")
        if not old:
            return None
        self.bump_version()
        return _face(dynamo.from_item(old))

    def faces(self) -> Iterator[GalleryFace]:
        """Every enrolled face (paginated, strongly consistent scan)."""
        pages = client("dynamodb").get_paginator("scan").paginate(TableName=self.name, ConsistentRead=True)
        for page in pages:
            for raw in page.get("Items", []):
                item = dynamo.from_item(raw)
                if item.get("person") == META_PERSON:
                    continue
                try:
                    yield _face(item)
                except (KeyError, ValueError) as exc:
                    log.warning("skipping malformed gallery item %s/%s: %s", item.get("person"), item.get("image_key"), exc)

    def version(self) -> int:
        """The change counter (0 before the first change)."""
        found = client("dynamodb").get_item(
            TableName=self.name,
            Key={"person": {"S": META_PERSON}, "image_key": {"S": META_KEY}},
            ConsistentRead=True,
        ).get("Item")
        return int(found["version"]["N"]) if found and "version" in found else 0

    def bump_version(self) -> int:
        """Count one change of the gallery; returns the new version."""
        response = client("dynamodb").update_item(
            TableName=self.name,
            Key={"person": {"S": META_PERSON}, "image_key": {"S": META_KEY}},
            UpdateExpression="ADD #v :one",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["version"]["N"])

    def load_gallery(self) -> Gallery:
        """Every enrolled face as a matching-ready Gallery, rebuilt only when the gallery changed."""
        version = self.version()
        with _cache_lock:
            cached = _cache.get(self.name)
        if cached and cached[0] == version:
            return cached[1]
        gallery = Gallery.from_pairs((face.person, face.embedding) for face in self.faces())
        with _cache_lock:
            _cache[self.name] = (version, gallery)
        return gallery


def _face(item: dict[str, Any]) -> GalleryFace:
    return GalleryFace(
        person=item["person"],
        image_key=item["image_key"],
        embedding=decode(item["embedding"]),
        etag=item.get("etag", ""),
        enrolled_at=item.get("enrolled_at", ""),
    )
