"""Decode uploaded photos into RGB arrays, refusing bad input with clear error codes."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from shared import errors
from shared.config import EngineConfig

# Formats we decode. Anything else Pillow recognizes (PSD, ICO, EPS, ...) is refused clearly.
SUPPORTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP"}

# ISO-BMFF brands of still images (iPhone HEIC, AVIF): they share the `ftyp` box with MP4 video.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}


def is_heif(data: bytes) -> bool:
    """True for a HEIC/HEIF/AVIF photo (by its `ftyp` box), which Pillow cannot decode here."""
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


# Our own limit is checked from the header; Pillow's bomb check would only duplicate it.
Image.MAX_IMAGE_PIXELS = None


def _looks_like(data: bytes) -> str:
    """What a file that is not an image seems to be, for the error message ("" when unsure)."""
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return " (it is a PDF document)"
    if head.startswith((b"<!doctype html", b"<html")):
        return " (it is an HTML page)"
    if b"<svg" in head:
        return " (it is an SVG drawing)"
    sample = data[:1024]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # binary, not text cut in the middle of a character
            return ""
        text = sample[: exc.start].decode("utf-8")
    return " (it is text)" if text and all(c.isprintable() or c.isspace() for c in text) else ""


def check_size(size: int, cfg: EngineConfig) -> None:
    """Refuse an empty file or one over `cfg.max_bytes` (callers can check before downloading)."""
    if not size:
        raise errors.FaceError(errors.EMPTY_FILE, "the file is empty")
    if size > cfg.max_bytes:
        raise errors.FaceError(errors.FILE_TOO_LARGE, f"the file has {size:,} bytes; the limit is {cfg.max_bytes:,}")


def open_image(data: bytes, cfg: EngineConfig) -> Image.Image:
    """Open `data` lazily and check size, format and dimensions from the header alone."""
    check_size(len(data), cfg)
    if is_heif(data):
        raise errors.FaceError(
            errors.UNSUPPORTED_FORMAT,
            "HEIC/HEIF/AVIF photos are not supported; export the photo as JPEG "
            "(iPhone: Settings > Camera > Formats > Most Compatible)",
        )
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise errors.FaceError(
            errors.NOT_AN_IMAGE, f"the file is not an image{_looks_like(data)}; upload a JPEG, PNG, WebP, GIF, TIFF or BMP photo"
        ) from None
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
