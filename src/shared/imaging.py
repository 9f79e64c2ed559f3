"""Decode uploaded photos into RGB arrays, refusing bad input with clear error codes."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared import errors
from shared.config import EngineConfig

# Formats we decode. Anything else Pillow recognises (PSD, ICO, EPS, ...) is refused clearly.
SUPPORTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP"}

# Our own limit is checked from the header; Pillow's bomb check would only duplicate it.
Image.MAX_IMAGE_PIXELS = None


def open_image(data: bytes, cfg: EngineConfig) -> Image.Image:
    """Open `data` lazily and check size, format and dimensions from the header alone."""
    if not data:
        raise errors.FaceError(errors.EMPTY_FILE, "the file is empty")
    if len(data) > cfg.max_bytes:
        raise errors.FaceError(
            errors.FILE_TOO_LARGE, f"the file has {len(data):,} bytes; the limit is {cfg.max_bytes:,}"
        )
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise errors.FaceError(errors.NOT_AN_IMAGE, "the file is not an image in a known format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise errors.FaceError(errors.TRUNCATED_IMAGE, f"the image header is damaged: {exc}") from None
    if image.format not in SUPPORTED_FORMATS:
        raise errors.FaceError(
            errors.UNSUPPORTED_FORMAT,
            f"{image.format} images are not supported; use JPEG, PNG, WebP, GIF, TIFF or BMP",
        )
    width, height = image.size
    if width * height > cfg.max_pixels:
        raise errors.FaceError(
            errors.TOO_MANY_PIXELS,
            f"the image is {width}x{height} ({width * height:,} pixels); the limit is {cfg.max_pixels:,}",
        )
    if min(width, height) < cfg.min_side:
        raise errors.FaceError(
            errors.IMAGE_TOO_SMALL, f"the image is {width}x{height}; both sides must be at least {cfg.min_side}"
        )
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an HxWx3 uint8 RGB array; transparency is laid on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        gray = (wide >> 8).astype(np.uint8) if wide.max() > 255 else wide.astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def decode_image(data: bytes, cfg: EngineConfig) -> np.ndarray:
    """Decode a photo to an upright HxWx3 uint8 RGB array, honouring EXIF orientation."""
    image = open_image(data, cfg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise errors.FaceError(errors.TRUNCATED_IMAGE, f"the image data is truncated or corrupt: {exc}") from None
    return to_rgb_array(image)
