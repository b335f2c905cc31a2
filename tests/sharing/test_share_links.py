"""Share links: made for one patient's visible items, opened without credentials, refused alike when wrong,
expired or revoked, every view audited, only the token's hash stored."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, ShareLink, utcnow
from chairside.errors import Problem
from chairside.media import derivatives
from chairside.sharing import links
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account, make_patient, operator

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no database rule in play


@pytest.fixture
def items(api: Client, patient: dict[str, Any], media_dir: Path) -> dict[str, dict[str, Any]]:
    return {"photo.jpg": api.upload(media_dir / "photo.jpg", patient["id"])}


def _more(api: Client, items: dict[str, dict[str, Any]], media_dir: Path, *names: str) -> None:
    for name in names:
        items[name] = api.upload(media_dir / name, items["photo.jpg"]["patient_id"])


def _share(dr: httpx.Client, ids: list[str], **extra: Any) -> httpx.Response:
    return dr.post("/api/v1/share-links", json={"media_ids": ids, **extra})


def test_a_link_opens_the_chosen_items_without_credentials(
    ctx: Context, dr: httpx.Client, api: Client, server: LiveServer, items: dict[str, dict[str, Any]], media_dir: Path
) -> None:
    _more(api, items, media_dir, "clip.mp4", "photo.png")
    photo, clip = items["photo.jpg"], items["clip.mp4"]
    r = _share(dr, [photo["id"], clip["id"]], expires_in_s=3600)
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) >= {"id", "url", "expires_at"} and made["qr_svg"].startswith("<svg")
    assert made["url"].startswith(f"{server.url}/s/")
    token = made["url"].rsplit("/", 1)[1]
    assert len(token) >= 32  # 192 bits in base64url

    with httpx.Client(base_url=server.url) as anyone:  # no cookie, no token
        page = anyone.get(made["url"])
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert f"/api/v1/shared/{token}/media/{photo['id']}/content" in page.text
        assert f"/api/v1/shared/{token}/media/{clip['id']}/content" in page.text
        assert items["photo.png"]["id"] not in page.text  # not chosen: not on the page
        listed = anyone.get(f"/api/v1/shared/{token}").json()
        assert [i["id"] for i in listed["items"]] == [photo["id"], clip["id"]]
        got = anyone.get(f"/api/v1/shared/{token}/media/{photo['id']}/content")
        assert got.status_code == 200 and got.content == (media_dir / "photo.jpg").read_bytes()
        part = anyone.get(f"/api/v1/shared/{token}/media/{clip['id']}/content", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == (media_dir / "clip.mp4").read_bytes()[:100]
        assert part.headers["content-range"].startswith("bytes 0-99/")
        assert anyone.get(f"/api/v1/shared/{token}/media/{clip['id']}/thumbnail").headers["content-type"] == \
            "image/jpeg"
        # an item of the same patient that the link does not name: as a wrong link
        other = anyone.get(f"/api/v1/shared/{token}/media/{items['photo.png']['id']}/content")
        assert other.status_code == 404 and other.json()["type"].endswith("/share-link-not-found")
        # the link does not open the rest of the API
        assert anyone.get(f"/api/v1/media/{photo['id']}/content").status_code == 401
    with ctx.db.read() as s:  # only the token's hash is kept
        row = s.get(ShareLink, uuid.UUID(made["id"]))
        assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in " ".join(str(v) for v in vars(row).values())


@SQLITE_ONLY
def test_a_heic_original_is_handed_out_as_jpeg(ctx: Context, dr: httpx.Client, api: Client, server: LiveServer,
                                              items: dict[str, dict[str, Any]], media_dir: Path) -> None:
    _more(api, items, media_dir, "photo.heic")
    heic = items["photo.heic"]
    made = _share(dr, [heic["id"]]).json()
    token = made["url"].rsplit("/", 1)[1]
    # made right after the link (a background task of the POST): the patient's first view does not wait for it
    assert links.prepare(ctx, uuid.UUID(made["id"])) == 1
    assert derivatives.cached_display(ctx, uuid.UUID(heic["id"])) is not None
    got = httpx.get(f"{server.url}/api/v1/shared/{token}/media/{heic['id']}/content")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content[:3] == b"\xff\xd8\xff"


def test_wrong_expired_and_revoked_links_answer_alike(
    ctx: Context, dr: httpx.Client, server: LiveServer, items: dict[str, dict[str, Any]]
) -> None:
    photo = items["photo.jpg"]
    revoked = _share(dr, [photo["id"]]).json()
    expired = _share(dr, [photo["id"]]).json()
    assert dr.delete(f"/api/v1/share-links/{revoked['id']}").status_code == 204
    assert dr.delete(f"/api/v1/share-links/{revoked['id']}").status_code == 204  # again: no change
    with ctx.db.session() as s:  # no service moves a link into the past: the row says it has expired
        s.execute(update(ShareLink).where(ShareLink.id == uuid.UUID(expired["id"]))
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    valid_token = _share(dr, [photo["id"]]).json()["url"].rsplit("/", 1)[1]
    wrong = valid_token[:-4] + ("AAAA" if not valid_token.endswith("AAAA") else "BBBB")
    urls = {"revoked": revoked["url"], "expired": expired["url"], "wrong": f"{server.url}/s/{wrong}",
            "short": f"{server.url}/s/x", "long": f"{server.url}/s/{'A' * 300}"}
    pages = {k: httpx.get(u) for k, u in urls.items()}
    assert {k: p.status_code for k, p in pages.items()} == dict.fromkeys(urls, 404)
    assert len({p.text for p in pages.values()}) == 1, "every refused link must look the same"
    apis = {k: httpx.get(u.replace("/s/", "/api/v1/shared/")) for k, u in urls.items()}
    apis.update({k: httpx.get(u.replace("/s/", "/api/v1/shared/") + f"/media/{photo['id']}/content")
                 for k, u in list(urls.items())[:3]})
    assert {r.status_code for r in apis.values()} == {404}
    assert len({r.content for r in apis.values()}) == 1
    assert httpx.get(f"{server.url}/s/{valid_token}").status_code == 200


def test_every_view_is_audited(ctx: Context, dr: httpx.Client, items: dict[str, dict[str, Any]]) -> None:
    photo = items["photo.jpg"]
    made = _share(dr, [photo["id"]]).json()
    for _ in range(3):
        assert httpx.get(made["url"], headers={"User-Agent": "PatientPhone/1"}).status_code == 200
    token = made["url"].rsplit("/", 1)[1]
    base = made["url"].split("/s/")[0]
    for _ in range(2):  # the bytes, twice: recorded once
        httpx.get(f"{base}/api/v1/shared/{token}/media/{photo['id']}/content")
    with ctx.db.read() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.actor_id == uuid.UUID(made["id"]))
                           .order_by(AuditEvent.id)).all()
        made_event = s.scalars(select(AuditEvent).where(AuditEvent.action == "share.create")).one()
    assert [e.action for e in events] == ["share.view"] * 3 + ["share.content"]
    assert {e.actor_kind for e in events} == {"share-link"} and events[0].device == "PatientPhone/1"
    assert str(events[-1].media_id) == photo["id"] and str(events[0].patient_id) == photo["patient_id"]
    assert made_event.actor_name == "viewer-a" and made_event.detail is not None
    assert made_event.detail["link_id"] == made["id"]


def test_foreign_and_invisible_items_are_refused(
    ctx: Context, dr: httpx.Client, server: LiveServer, other_tenant: Tenant, media_dir: Path,
    items: dict[str, dict[str, Any]],
) -> None:
    with Client(server.url, other_tenant.token) as theirs:
        foreign_patient = theirs.create_patient(other_tenant.clinic_ids[0], "9", "他院 患者", "タイン カンジャ")
        foreign = theirs.upload(media_dir / "photo.png", foreign_patient["id"])
    r = _share(dr, [items["photo.jpg"]["id"], foreign["id"]])
    assert r.status_code == 404 and r.json()["type"].endswith("/media-not-found")
    missing = _share(dr, [str(uuid.uuid4())])
    assert missing.status_code == 404 and missing.json() == r.json()  # a foreign id answers like a missing one
    with ctx.db.read() as s:
        assert s.scalars(select(ShareLink)).all() == []


def test_a_clinic_scoped_account_cannot_share_another_clinics_patient(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path
) -> None:
    branch = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[1], "B-1")
    with Client(server.url, tenant.station_tokens[1]) as chair:
        item = chair.upload(media_dir / "photo.png", str(branch.id))
    scoped = make_account(ctx, tenant, "honin-only", clinic_ids=[tenant.clinic_ids[0]])
    token = sign_in(server, scoped)
    r = httpx.post(f"{server.url}/api/v1/share-links", json={"media_ids": [item["id"]]},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404


def test_one_patient_per_link_and_lifetime_bounds(
    ctx: Context, dr: httpx.Client, api: Client, tenant: Tenant, media_dir: Path, items: dict[str, dict[str, Any]]
) -> None:
    second = api.create_patient(tenant.clinic_ids[0], "00002", "佐藤 花子", "サトウ ハナコ")
    theirs = api.upload(media_dir / "photo.png", second["id"])
    r = _share(dr, [items["photo.jpg"]["id"], theirs["id"]])
    assert r.status_code == 422 and r.json()["type"].endswith("/several-patients")
    assert _share(dr, [items["photo.jpg"]["id"]], expires_in_s=10).status_code == 422
    too_long = ctx.settings.share_link_max_ttl_s + 1
    assert _share(dr, [items["photo.jpg"]["id"]], expires_in_s=too_long).status_code == 422
    default = _share(dr, [items["photo.jpg"]["id"]]).json()
    with ctx.db.read() as s:
        row = s.get(ShareLink, uuid.UUID(default["id"]))
        assert row is not None
        assert (row.expires_at - row.created_at).total_seconds() == ctx.settings.share_link_ttl_s == 7 * 24 * 3600


def test_a_trashed_item_leaves_the_link_and_stations_cannot_share(
    dr: httpx.Client, api: Client, server: LiveServer, tenant: Tenant, items: dict[str, dict[str, Any]],
    media_dir: Path,
) -> None:
    _more(api, items, media_dir, "photo.png")
    photo, clip = items["photo.jpg"], items["photo.png"]
    made = _share(dr, [photo["id"], clip["id"]]).json()
    token = made["url"].rsplit("/", 1)[1]
    assert dr.delete(f"/api/v1/media/{photo['id']}").status_code == 200
    shown = httpx.get(f"{server.url}/api/v1/shared/{token}").json()
    assert [i["id"] for i in shown["items"]] == [clip["id"]]
    assert httpx.get(f"{server.url}/api/v1/shared/{token}/media/{photo['id']}/content").status_code == 404
    station = httpx.post(f"{server.url}/api/v1/share-links", json={"media_ids": [clip["id"]]},
                         headers={"Authorization": f"Bearer {tenant.token}"})
    assert station.status_code == 403


def test_revoking_is_for_the_links_own_contract_and_is_audited(
    ctx: Context, dr: httpx.Client, server: LiveServer, other_tenant: Tenant, items: dict[str, dict[str, Any]]
) -> None:
    made = _share(dr, [items["photo.jpg"]["id"]]).json()
    stranger = make_account(ctx, other_tenant, "stranger")
    r = httpx.delete(f"{server.url}/api/v1/share-links/{made['id']}",
                     headers={"Authorization": f"Bearer {sign_in(server, stranger)}"})
    assert r.status_code == 404
    assert httpx.get(made["url"]).status_code == 200  # still open
    listed = dr.get(f"/api/v1/patients/{items['photo.jpg']['patient_id']}/share-links").json()["items"]
    assert [i["id"] for i in listed] == [made["id"]]
    assert dr.delete(f"/api/v1/share-links/{made['id']}").status_code == 204
    assert dr.get(f"/api/v1/patients/{items['photo.jpg']['patient_id']}/share-links").json()["items"] == []
    with ctx.db.read() as s:
        assert s.scalars(select(AuditEvent.action).where(AuditEvent.action == "share.revoke")).all() == ["share.revoke"]


@SQLITE_ONLY
def test_resolve_refuses_at_the_moment_of_expiry(ctx: Context, tenant: Tenant, media_dir: Path,
                                                  api: Client, items: dict[str, dict[str, Any]]) -> None:
    link, token = links.create(ctx, operator(tenant.contract_id), [uuid.UUID(items["photo.jpg"]["id"])], 60)
    assert links.resolve(ctx, token, now=link.expires_at - timedelta(seconds=1)).items
    with pytest.raises(Problem) as refused:
        links.resolve(ctx, token, now=link.expires_at)
    assert refused.value.status == 404 and refused.value.detail == links.NOT_FOUND_DETAIL
