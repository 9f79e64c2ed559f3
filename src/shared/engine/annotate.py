"""Draw face boxes and names on an image and encode it as JPEG."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.engine.faces import Box

KNOWN_COLOUR = (46, 204, 64)
UNKNOWN_COLOUR = (255, 65, 54)


def annotate(image: np.ndarray, boxes: list[Box], labels: list[str | None], quality: int = 85) -> bytes:
    """JPEG bytes of `image` with each box outlined and labelled ("unknown" where the label is None)."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 400))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 45)))
    for box, label in zip(boxes, labels):
        colour = KNOWN_COLOUR if label else UNKNOWN_COLOUR
        right, bottom = box.left + box.width, box.top + box.height
        draw.rectangle((box.left, box.top, right, bottom), outline=colour, width=line)
        text = label or "unknown"
        tl, tt, tr, tb = draw.textbbox((0, 0), text, font=font)
        label_top = max(0, bottom - (tb - tt) - 2 * line)
        draw.rectangle((box.left, label_top, box.left + (tr - tl) + 2 * line, bottom), fill=colour)
        draw.text((box.left + line, label_top + line - tt), text, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    canvas.save(out, format="JPEG", quality=quality)
    return out.getvalue()
