"""Patient handouts: an item, or a comparison of 2–4 items, with its drawings burnt in, as one JPEG.

The original never changes: the handout is made on request from the item's picture (a photo's upright display
JPEG — so a HEIC original is handed out as JPEG — or a video's frame) and its drawing layer, rendered by the
same renderer as the export's overlays (transfer/overlay.py), scaled to the picture and laid over it. For a
video, the frame is the one the newest drawing belongs to (or the time asked for), with the drawings of that
moment; without drawings, the frame its thumbnail shows. The printable A4 page around it (clinic, patient,
date) is web/templates/handout.html. Every handout made is recorded in the audit trail (`media.handout`).

Memory: a picture is at most `MAX_SIDE` on its long side; a video's bytes are copied (streamed) to a temporary
file for the decoder, never read whole into memory.
"""

from __future__ import annotations

import io
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Annotation, Clinic, Media, Patient
from chairside.domain.calendar import japan_day
from chairside.errors import Problem
from chairside.media import derivatives, heavy
from chairside.media.items import not_found
from chairside.mediafile import MediaError, make_display_jpeg
from chairside.mediafile._av import display_rotation, frame_at, frame_to_pil, open_input, video_stream
from chairside.mediafile.thumbnails import video_still
from chairside.tenancy import visibility
from chairside.transfer.overlay import render_png

MAX_SIDE = 2048
MAX_ITEMS = 4
SAME_MOMENT_S = 0.05  # a video drawing belongs to the frame within this of its time
QUALITY = 88
_ROTATE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Subject:
    """Who and where a handout is for: the page's heading."""

    clinic_name: str
    patient_name: str
    chart_no: str
    items: tuple[Media, ...]


def _chosen(ctx: Context, principal: Principal, media_ids: Sequence[uuid.UUID]) -> Subject:
    ids = list(dict.fromkeys(media_ids))
    if not 1 <= len(ids) <= MAX_ITEMS:
        raise Problem(422, f"A handout shows 1 to {MAX_ITEMS} items. Choose fewer.", code="invalid")
    with ctx.db.read() as s:
        items = []
        for media_id in ids:
            item = visibility.media_item(s, principal, media_id)
            if item is None:
                raise not_found()
            items.append(item)
        if len({i.patient_id for i in items}) != 1:
            raise Problem(422, "A handout shows one patient's items only. Choose items of a single patient.",
                          code="several-patients")
        patient = s.get(Patient, items[0].patient_id)
        assert patient is not None
        clinic = s.get(Clinic, patient.clinic_id)
        return Subject(clinic.name if clinic else "", patient.name, patient.chart_no, tuple(items))


def subject(ctx: Context, principal: Principal, media_ids: Sequence[uuid.UUID]) -> Subject:
    """The clinic, patient and items of a handout (404 for an item out of sight; one patient only)."""
    return _chosen(ctx, principal, media_ids)


def _copy(ctx: Context, sha256: str, path: Path) -> None:
    with ctx.blobs.open_range(sha256) as chunks, open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


def _photo(ctx: Context, item: Media, tmp: Path) -> Image.Image:
    source = item.sha256 if derivatives.shown_as_is(item) else derivatives.display_copy(ctx, item).sha256
    _copy(ctx, source, tmp / "photo")
    try:
        data = make_display_jpeg(tmp / "photo", MAX_SIDE, ctx.settings.max_photo_pixels)  # upright, bounded
    except MediaError:
        raise Problem(422, "This photo could not be decoded, so no handout can be made of it.",
                      code="no-display") from None
    return Image.open(io.BytesIO(data)).convert("RGB")


def _frame(ctx: Context, item: Media, seconds: float | None, tmp: Path) -> Image.Image:
    _copy(ctx, item.sha256, tmp / "video")
    try:
        if seconds is None:
            return video_still(tmp / "video", MAX_SIDE).convert("RGB")
        with open_input(tmp / "video") as container:
            stream = video_stream(container)
            frame = frame_at(container, stream, seconds)
            if frame is None:
                return video_still(tmp / "video", MAX_SIDE).convert("RGB")
            scale = min(1.0, MAX_SIDE / max(frame.width, frame.height))
            picture = frame_to_pil(frame, max(2, round(frame.width * scale)), max(2, round(frame.height * scale)))
            rotation = display_rotation(frame)
            return (picture.transpose(_ROTATE[rotation]) if rotation else picture).convert("RGB")
    except MediaError:
        raise Problem(422, "This video could not be decoded, so no handout can be made of it.",
                      code="no-display") from None


def _drawings(ctx: Context, item: Media, at_s: float | None) -> tuple[float | None, list[dict[str, Any]]]:
    """The moment to show (videos) and the shapes drawn for it."""
    with ctx.db.read() as s:
        layers = list(s.scalars(select(Annotation).where(Annotation.media_id == item.id)
                                .order_by(Annotation.updated_at, Annotation.id)))
    if item.kind != "video":
        return None, [shape for layer in layers for shape in layer.shapes]
    timed = [layer for layer in layers if layer.media_time_s is not None]
    moment = at_s if at_s is not None else (timed[-1].media_time_s if timed else None)
    if moment is None:
        return None, []
    return moment, [shape for layer in timed if abs((layer.media_time_s or 0.0) - moment) <= SAME_MOMENT_S
                    for shape in layer.shapes]


def burnt_in(ctx: Context, item: Media, at_s: float | None = None) -> Image.Image:
    """The item's picture with its drawings laid over it (RGB)."""
    moment, shapes = _drawings(ctx, item, at_s)
    with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp, heavy.slot(ctx.settings.heavy_work_parallel):
        picture = _photo(ctx, item, Path(tmp)) if item.kind == "image" else _frame(ctx, item, moment, Path(tmp))
    if shapes:
        layer = Image.open(io.BytesIO(render_png(shapes, picture.width, picture.height))).convert("RGBA")
        if layer.size != picture.size:
            layer = layer.resize(picture.size, Image.Resampling.LANCZOS)
        picture = Image.alpha_composite(picture.convert("RGBA"), layer).convert("RGB")
    return picture


def _label(when: datetime) -> str:
    return japan_day(when).isoformat()


def _compose(pictures: Sequence[Image.Image], labels: Sequence[str]) -> Image.Image:
    """2–4 pictures side by side (two per row), each under its date."""
    cols = 2
    rows = (len(pictures) + 1) // cols
    cell_w, cell_h, caption, gap = 1024, 768, 44, 16
    sheet = Image.new("RGB", (cols * cell_w + (cols + 1) * gap, rows * (cell_h + caption) + (rows + 1) * gap),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=30)
    for n, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        row, col = divmod(n, cols)
        x0, y0 = gap + col * (cell_w + gap), gap + row * (cell_h + caption + gap)
        fitted = picture.copy()
        fitted.thumbnail((cell_w, cell_h), Image.Resampling.LANCZOS)
        sheet.paste(fitted, (x0 + (cell_w - fitted.width) // 2, y0 + (cell_h - fitted.height) // 2))
        draw.text((x0 + 8, y0 + cell_h + 6), f"{n + 1}. {label}", fill=(23, 35, 39), font=font)
    return sheet


def handout_jpeg(ctx: Context, principal: Principal, media_ids: Sequence[uuid.UUID],
                 at_s: float | None = None) -> bytes:
    """One item (or a comparison of 2–4 of one patient's items) with drawings burnt in, as JPEG. Audited."""
    chosen = _chosen(ctx, principal, media_ids)
    pictures = [burnt_in(ctx, item, at_s if len(chosen.items) == 1 else None) for item in chosen.items]
    image = pictures[0] if len(pictures) == 1 else _compose(pictures, [_label(i.captured_at) for i in chosen.items])
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=QUALITY, optimize=True)
    for item in chosen.items:
        audit.record(ctx, principal, "media.handout", patient_id=item.patient_id, media_id=item.id)
    return out.getvalue()
