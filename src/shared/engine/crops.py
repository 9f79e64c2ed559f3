"""Face crops: the face's box with a margin, as a JPEG large enough to be enrolled from."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

MARGIN = 0.6  # of the box's side, added on every side: the detector needs the face's context
MIN_SIDE = 240  # smaller crops are scaled up (HOG finds faces of about 80 px and more)


def crop_box(width: int, height: int, box: dict[str, int], margin: float = MARGIN) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the box grown by `margin` on each side, clipped to the image."""
    grow_x, grow_y = int(box["width"] * margin), int(box["height"] * margin)
    left, top = max(0, box["left"] - grow_x), max(0, box["top"] - grow_y)
    right = min(width, box["left"] + box["width"] + grow_x)
    bottom = min(height, box["top"] + box["height"] + grow_y)
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return left, top, right, bottom


def crop_face(image: np.ndarray, box: dict[str, int], margin: float = MARGIN, min_side: int = MIN_SIDE,
              quality: int = 92) -> bytes:
    """The face at `box` in the RGB `image`, with `margin`, as JPEG bytes (scaled up to `min_side`)."""
    left, top, right, bottom = crop_box(image.shape[1], image.shape[0], box, margin)
    crop = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    short = min(crop.size)
    if short < min_side:
        scale = min_side / short
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=quality)
    return out.getvalue()
