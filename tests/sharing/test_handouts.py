"""Handouts: an item or a comparison with its drawings burnt in (JPEG, HEIC too) and a printable A4 page."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account

RED = "#ff0000"
# a thick red circle in the middle of the picture
CIRCLE = {"type": "circle", "color": RED, "width": 0.03, "start": [0.3, 0.3], "end": [0.7, 0.7]}


def _red_at(image: Image.Image, x: float, y: float) -> bool:
    pixel = image.convert("RGB").getpixel((round(x * (image.width - 1)), round(y * (image.height - 1))))
    assert isinstance(pixel, tuple)
    r, g, b = pixel[:3]
    return bool(r > 200 and g < 80 and b < 80)


def _jpeg(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: handouts are picture work over rows the share-link and edit tests cover on both databases."""
    return f"sqlite:///{tmp_path / 'chairside.db'}"


@pytest.fixture
def photo(api: Client, patient: dict[str, Any], media_dir: Path) -> dict[str, Any]:
    return api.upload(media_dir / "photo.jpg", patient["id"])


def test_a_photo_handout_has_its_drawing_burnt_in(dr: httpx.Client, photo: dict[str, Any],
                                                  media_dir: Path) -> None:
    before = _jpeg(dr.get(f"/api/v1/media/{photo['id']}/handout.jpg"))
    assert before.size == (800, 600) and not _red_at(before, 0.5, 0.315)
    assert dr.post(f"/api/v1/media/{photo['id']}/annotations", json={"shapes": [CIRCLE]}).status_code == 201
    after = _jpeg(dr.get(f"/api/v1/media/{photo['id']}/handout.jpg"))
    assert _red_at(after, 0.5, 0.315) and _red_at(after, 0.315, 0.5)  # on the ellipse's edge
    assert not _red_at(after, 0.5, 0.5)  # not filled
    assert dr.get(f"/api/v1/media/{photo['id']}/content").content == (media_dir / "photo.jpg").read_bytes()


def test_a_heic_photo_and_a_video_frame_are_handed_out_as_jpeg(
    dr: httpx.Client, api: Client, patient: dict[str, Any], media_dir: Path
) -> None:
    heic = api.upload(media_dir / "photo.heic", patient["id"])
    assert _jpeg(dr.get(f"/api/v1/media/{heic['id']}/handout.jpg")).size == (640, 480)
    clip = api.upload(media_dir / "clip.mp4", patient["id"])
    drawn = dr.post(f"/api/v1/media/{clip['id']}/annotations", json={"shapes": [CIRCLE], "media_time_s": 0.5})
    assert drawn.status_code == 201
    frame = _jpeg(dr.get(f"/api/v1/media/{clip['id']}/handout.jpg"))
    assert frame.size == (640, 360) and _red_at(frame, 0.5, 0.315)
    elsewhere = _jpeg(dr.get(f"/api/v1/media/{clip['id']}/handout.jpg", params={"t": 0.1}))
    assert not _red_at(elsewhere, 0.5, 0.315)  # the drawing belongs to 0.5 s, not to 0.1 s


def test_a_comparison_and_its_printable_page(
    ctx: Context, dr: httpx.Client, api: Client, patient: dict[str, Any], photo: dict[str, Any], media_dir: Path
) -> None:
    second = api.upload(media_dir / "photo.png", patient["id"])
    sheet = _jpeg(dr.get("/api/v1/handout.jpg", params={"m": [photo["id"], second["id"]]}))
    assert sheet.width > sheet.height  # side by side
    page = dr.get("/handout", params={"m": [photo["id"], second["id"]]})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "山田 太郎 様" in page.text and "テスト歯科 1" in page.text and "00001" in page.text
    assert f"/api/v1/handout.jpg?m={photo['id']}&amp;m={second['id']}" in page.text
    with ctx.db.read() as s:
        handed = s.scalars(select(AuditEvent.media_id).where(AuditEvent.action == "media.handout")).all()
    assert {str(m) for m in handed} == {photo["id"], second["id"]}
    assert dr.get("/api/v1/handout.jpg", params={"m": [photo["id"]] * 1 + [second["id"]] * 0 +
                                                 [photo["id"]]}).status_code == 200  # repeats count once


def test_handouts_stay_within_sight(
    ctx: Context, dr: httpx.Client, api: Client, server: LiveServer, tenant: Tenant, other_tenant: Tenant,
    photo: dict[str, Any], media_dir: Path,
) -> None:
    stranger = make_account(ctx, other_tenant, "stranger")
    with httpx.Client(base_url=server.url,
                      headers={"Authorization": f"Bearer {sign_in(server, stranger)}"}) as theirs:
        assert theirs.get(f"/api/v1/media/{photo['id']}/handout.jpg").status_code == 404
        assert theirs.get("/handout", params={"m": photo["id"]}).status_code == 404
    other = api.create_patient(tenant.clinic_ids[0], "00002", "佐藤 花子", "サトウ ハナコ")
    theirs_item = api.upload(media_dir / "photo.png", other["id"])
    mixed = dr.get("/api/v1/handout.jpg", params={"m": [photo["id"], theirs_item["id"]]})
    assert mixed.status_code == 422
    assert httpx.get(f"{server.url}/api/v1/media/{photo['id']}/handout.jpg").status_code == 401
