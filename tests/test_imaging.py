"""Decoding: every format a user uploads works; every bad input gets its own error code."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image
from support.images import encode

from shared import errors
from shared.config import EngineConfig
from shared.engine.faces import face_distance, find_faces
from shared.errors import FaceError
from shared.engine.decode import decode_image

JOHN = "seed/john1.jpg"


def error_code(data: bytes, cfg: EngineConfig | None = None) -> str:
    with pytest.raises(FaceError) as caught:
        decode_image(data, cfg or EngineConfig())
    assert caught.value.message, "every error carries a message for people"
    return caught.value.code


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims huge dimensions: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def john(photos):
    """The original upright photo, its decoded pixels and its single face."""
    image = photos.image(JOHN)
    (face,) = photos.faces(JOHN)
    return Image.fromarray(image), face


def same_face(data: bytes, face, max_distance: float = 0.25) -> None:
    """`data` decodes to a photo whose single face is the reference face."""
    image = decode_image(data, EngineConfig())
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    (found,) = find_faces(image)
    assert face_distance(face.embedding, found.embedding)[0] < max_distance


@pytest.mark.parametrize(
    "fmt, convert, options",
    [
        ("JPEG", "RGB", {"progressive": True, "quality": 90}),
        ("JPEG", "CMYK", {"quality": 95}),
        ("JPEG", "L", {"quality": 95}),
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
        ("PNG", "LA", {}),
        ("WEBP", "RGB", {"quality": 90}),
        ("GIF", "P", {}),
        ("TIFF", "RGB", {}),
        ("BMP", "RGB", {}),
    ],
)
def test_formats_decode_to_the_same_face(john, fmt, convert, options):
    image, face = john
    same_face(encode(image.convert(convert), fmt, **options), face)


def test_sixteen_bit_png_decodes_to_the_same_face(john):
    image, face = john
    bgr16 = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    ok, png = cv2.imencode(".png", bgr16)
    assert ok and Image.open(io.BytesIO(png.tobytes())).mode in ("RGB", "I;16", "RGB;16")
    same_face(png.tobytes(), face)


def test_sixteen_bit_grayscale_png_decodes(john):
    image, face = john
    gray16 = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    data = encode(Image.fromarray(gray16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data, EngineConfig())
    gray8 = np.asarray(image.convert("L"), dtype=np.float64)
    assert abs(decoded[..., 0].mean() - gray8.mean()) < 1.0, "16-bit values are scaled, not clipped to white"
    same_face(data, face, max_distance=0.35)


@pytest.mark.parametrize("orientation, undo", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                               (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_is_honoured(john, orientation, undo):
    """A phone photo stored sideways with an orientation tag is recognised as the same person."""
    image, face = john
    stored = image.transpose(undo)  # the pixels as a sideways camera stores them
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data, EngineConfig())
    assert decoded.shape == np.asarray(image).shape
    (found,) = find_faces(decoded)
    assert face_distance(face.embedding, found.embedding)[0] < 0.25
    assert abs(found.box.left - face.box.left) < 20 and abs(found.box.top - face.box.top) < 20


def test_rgba_png_from_the_samples(photos):
    assert len(photos.faces("hard/32bit.png")) == 1


def test_empty_file():
    assert error_code(b"") == errors.EMPTY_FILE


@pytest.mark.parametrize("data", [b"hello, this is text\n" * 20, b"<!DOCTYPE html><html><body>hi</body></html>",
                                  bytes(range(256)) * 8])
def test_not_an_image(data):
    assert error_code(data) == errors.NOT_AN_IMAGE


def test_truncated_jpeg(photos):
    data = photos.bytes(JOHN)
    assert error_code(data[: len(data) // 2]) == errors.TRUNCATED_IMAGE


def test_truncated_png(photos):
    data = photos.bytes("people/alex_lacamoire/alex3.png")
    assert error_code(data[: len(data) // 2]) == errors.TRUNCATED_IMAGE


def test_file_over_the_byte_limit(photos):
    data = photos.bytes(JOHN)
    assert error_code(data, EngineConfig(max_bytes=len(data) - 1)) == errors.FILE_TOO_LARGE


def test_decompression_bomb_is_refused_from_its_header():
    bomb = png_header_only(100_000, 100_000)  # 10 gigapixels in under 100 bytes
    assert len(bomb) < 200
    assert error_code(bomb) == errors.TOO_MANY_PIXELS


def test_pixel_limit_is_configurable(photos):
    assert error_code(photos.bytes(JOHN), EngineConfig(max_pixels=100_000)) == errors.TOO_MANY_PIXELS


@pytest.mark.parametrize("size", [(1, 1), (79, 500), (500, 60)])
def test_images_smaller_than_80_pixels(size):
    assert error_code(encode(Image.new("RGB", size, "gray"), "PNG")) == errors.IMAGE_TOO_SMALL


def test_unsupported_format_is_named(john):
    image, _ = john
    assert error_code(encode(image, "PPM")) == errors.UNSUPPORTED_FORMAT


@pytest.mark.parametrize("brand", [b"heic", b"mif1", b"avif"])
def test_heic_and_avif_photos_are_refused_by_name(brand):
    head = b"\x00\x00\x00\x1cftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(500)
    with pytest.raises(FaceError) as caught:
        decode_image(head, EngineConfig())
    assert caught.value.code == errors.UNSUPPORTED_FORMAT and "JPEG" in caught.value.message
