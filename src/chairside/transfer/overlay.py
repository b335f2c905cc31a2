"""A drawing (media/annotations.py shapes, coordinates 0..1) as a transparent PNG the size of its picture.

Laid over the photo (or the video frame at `media_time_s`) in any image program, it shows what the
viewer shows. The JSON next to it keeps the exact shapes. Text uses Pillow's built-in font: Latin
letters render; other scripts are kept exactly in the JSON.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

MAX_SIDE = 1920


def _size(width: int | None, height: int | None) -> tuple[int, int]:
    w, h = (width or 1920), (height or 1080)
    scale = min(1.0, MAX_SIDE / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def render_png(shapes: Sequence[dict[str, Any]], width: int | None, height: int | None) -> bytes:
    w, h = _size(width, height)
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)

    def at(p: Sequence[float]) -> tuple[float, float]:
        return float(p[0]) * w, float(p[1]) * h

    for shape in shapes:
        color = str(shape.get("color", "#e53935"))
        line = max(1, round(float(shape.get("width", 0.006)) * w))
        kind = shape.get("type")
        if kind == "pen":
            points = [at(p) for p in shape.get("points", [])]
            if len(points) == 1:
                x, y = points[0]
                draw.ellipse((x - line / 2, y - line / 2, x + line / 2, y + line / 2), fill=color)
            elif points:
                draw.line(points, fill=color, width=line, joint="curve")
        elif kind == "arrow":
            (x0, y0), (x1, y1) = at(shape["start"]), at(shape["end"])
            draw.line((x0, y0, x1, y1), fill=color, width=line)
            angle, head = math.atan2(y1 - y0, x1 - x0), max(line * 4, 8)
            for side in (-0.5, 0.5):
                draw.line((x1, y1, x1 - head * math.cos(angle + side), y1 - head * math.sin(angle + side)),
                          fill=color, width=line)
        elif kind == "circle":
            (x0, y0), (x1, y1) = at(shape["start"]), at(shape["end"])
            draw.ellipse((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=color, width=line)
        elif kind == "text":
            x, y = at(shape["at"])
            font = ImageFont.load_default(size=max(8, round(float(shape.get("size", 0.04)) * h)))
            draw.text((x, y), str(shape.get("text", "")), fill=color, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
