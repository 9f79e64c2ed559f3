"""Test images made from the sample photos."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """`image` saved in format `fmt` ("JPEG", "PNG", ...), as bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(faces_dir: Path, rel: str) -> Image.Image:
    """A sample photo, upright (EXIF orientation applied), in RGB."""
    return ImageOps.exif_transpose(Image.open(faces_dir / rel)).convert("RGB")


def background(faces_dir: Path) -> Image.Image:
    """A real photo without a face: the part of obama3.jpg left of his face (600x2333)."""
    return photo(faces_dir, "people/obama/obama3.jpg").crop((0, 0, 600, 2333))


def max_side(image: np.ndarray, side: int) -> np.ndarray:
    """`image` scaled down (bilinear) so that its longer side is at most `side`."""
    scale = side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
