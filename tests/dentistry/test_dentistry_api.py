"""Tooth numbers and notes through the API, on SQLite and PostgreSQL: set, read, filter the timeline by
tooth, foreign ids answered as missing ones, bad numbers and bad notes refused with problem+json, every
change audited and in the changes feed, and a clinic's display choice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import AuditEvent, Change, MediaTooth, Note
from chairside.media import trash
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"].endswith("/" + code), body
    return body


def _timeline(dr: httpx.Client, patient_id: str, **params: Any) -> list[str]:
    r = dr.get(f"/api/v1/patients/{patient_id}/media", params=params)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


def test_teeth_are_set_returned_with_the_item_and_filter_the_timeline(
        ctx: Context, dr: httpx.Client, api: Client, items: list[dict[str, Any]], patient: dict[str, Any]) -> None:
    photo, clip, png = (m["id"] for m in items)
    pid = str(patient["id"])
    r = dr.put(f"/api/v1/media/{photo}/teeth", json={"teeth": [17, 16, 16]})
    assert r.status_code == 200 and r.json() == {"media_id": photo, "teeth": [16, 17]}
    assert dr.put(f"/api/v1/media/{clip}/teeth", json={"teeth": [16, 55]}).json()["teeth"] == [16, 55]
    assert dr.get(f"/api/v1/media/{photo}").json()["teeth"] == [16, 17]
    listed = {m["id"]: m["teeth"] for m in dr.get(f"/api/v1/patients/{pid}/media").json()["items"]}
    assert listed == {photo: [16, 17], clip: [16, 55], png: []}

    newest_first = _timeline(dr, pid)
    assert _timeline(dr, pid, tooth=16) == [i for i in newest_first if i in (photo, clip)]
    assert _timeline(dr, pid, tooth=17) == [photo]
    assert _timeline(dr, pid, tooth=55) == [clip]
    assert _timeline(dr, pid, tooth=[17, 55]) == [i for i in newest_first if i in (photo, clip)]
    assert _timeline(dr, pid, tooth=48) == []
    assert _timeline(dr, pid, tooth=16, kind="video") == [clip]
    # Pages through a filtered timeline keep the filter.
    first = dr.get(f"/api/v1/patients/{pid}/media", params={"tooth": 16, "limit": 1}).json()
    rest = dr.get(f"/api/v1/patients/{pid}/media", params={"tooth": 16, "limit": 1,
                                                           "cursor": first["next_cursor"]}).json()
    assert [m["id"] for m in first["items"] + rest["items"]] == _timeline(dr, pid, tooth=16)
    assert rest["next_cursor"] is None

    # Cleared, and the same set again changes nothing (one audit entry per change).
    assert dr.put(f"/api/v1/media/{clip}/teeth", json={"teeth": []}).json()["teeth"] == []
    assert dr.put(f"/api/v1/media/{photo}/teeth", json={"teeth": [16, 17]}).status_code == 200
    assert _timeline(dr, pid, tooth=16) == [photo]
    with ctx.db.read() as s:
        audited = s.execute(select(AuditEvent.media_id, AuditEvent.detail, AuditEvent.actor_name)
                            .where(AuditEvent.action == "media.teeth").order_by(AuditEvent.id)).all()
        events = s.execute(select(Change.entity_id, Change.body).where(Change.kind == "media.teeth")
                           .order_by(Change.seq)).all()
    assert [(str(m), d["teeth"]) for m, d, _ in audited] == [(photo, [16, 17]), (clip, [16, 55]), (clip, [])]
    assert {name for _, _, name in audited} == {"viewer-a"}
    assert [(str(e), b["teeth"]) for e, b in events] == [(photo, [16, 17]), (clip, [16, 55]), (clip, [])]
    # The SDK (a station): set and filter.
    assert api.set_teeth(png, [48, 11]) == [11, 48]
    assert [m["id"] for m in api.list_media(pid, tooth=48)] == [png]


def test_bad_tooth_numbers_are_refused_with_a_problem(
        dr: httpx.Client, photo: dict[str, Any], patient: dict[str, Any]) -> None:
    item = photo["id"]
    for bad in ([19], [16, 56], [0], [100], [-16], [90]):
        body = _problem(dr.put(f"/api/v1/media/{item}/teeth", json={"teeth": bad}), 422, "bad-tooth")
        assert "歯の番号" in body["detail"] and "11–48" in body["detail"]
    _problem(dr.put(f"/api/v1/media/{item}/teeth", json={"teeth": [*range(11, 19), *range(21, 29), *range(31, 39),
                                                                     *range(41, 49), 51]}), 422, "bad-tooth")
    bad_type = dr.put(f"/api/v1/media/{item}/teeth", json={"teeth": ["右上6"]})
    assert bad_type.status_code == 422 and bad_type.headers["content-type"].startswith("application/problem+json")
    _problem(dr.get(f"/api/v1/patients/{patient['id']}/media", params={"tooth": 19}), 422, "bad-tooth")
    assert dr.get(f"/api/v1/media/{item}").json()["teeth"] == []  # nothing was stored


def test_foreign_and_unknown_ids_answer_alike(
        ctx: Context, server: LiveServer, dr: httpx.Client, other_tenant: Tenant, media_dir: Path) -> None:
    with Client(server.url, other_tenant.token) as foreign:
        theirs = foreign.create_patient(other_tenant.clinic_ids[0], "7", "他院 患者", "タイン カンジャ")
        item = foreign.upload(media_dir / "photo.jpg", theirs["id"])
    nobody = str(uuid.uuid4())
    for path, body in (("/api/v1/media/{}/teeth", {"teeth": [16]}), ("/api/v1/media/{}/note", {"text": "x"})):
        a = dr.put(path.format(item["id"]), json=body)
        b = dr.put(path.format(nobody), json=body)
        assert a.status_code == b.status_code == 404
        assert {k: v for k, v in a.json().items() if k != "instance"} == \
            {k: v for k, v in b.json().items() if k != "instance"}
    for path in ("/api/v1/media/{}/note", "/api/v1/patients/{}/note"):
        own = theirs["id"] if "patients" in path else item["id"]
        a, b = dr.get(path.format(own)), dr.get(path.format(nobody))
        assert a.status_code == b.status_code == 404 and a.json()["detail"] == b.json()["detail"]
        assert dr.put(path.format(own), json={"text": "見えない"}).status_code == 404
    assert dr.get(f"/api/v1/patients/{theirs['id']}/media", params={"tooth": 16}).status_code == 404
    with ctx.db.read() as s:
        assert s.scalar(select(MediaTooth.media_id)) is None and s.scalar(select(Note.entity_id)) is None


def test_notes_on_an_item_and_a_patient(
        ctx: Context, dr: httpx.Client, photo: dict[str, Any], patient: dict[str, Any]) -> None:
    item, pid = photo["id"], str(patient["id"])
    empty = dr.get(f"/api/v1/media/{item}/note").json()
    assert (empty["text"], empty["updated_at"], empty["kind"]) == ("", None, "media")
    r = dr.put(f"/api/v1/media/{item}/note", json={"text": "右下6 根管治療の説明に使用\r\n  \n術後 2 週\n\n"})
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["text"] == "右下6 根管治療の説明に使用\n\n術後 2 週" and saved["author_name"] == "viewer-a"
    assert dr.get(f"/api/v1/media/{item}/note").json() == saved
    decomposed = "ハ\u309aノラマ"  # パ written as ハ + combining mark
    p = dr.put(f"/api/v1/patients/{pid}/note", json={"text": f"{decomposed}で説明希望。金属アレルギーあり"}).json()
    assert p["text"] == "パノラマで説明希望。金属アレルギーあり" and p["kind"] == "patient"
    assert dr.get(f"/api/v1/patients/{pid}/note").json()["text"] == p["text"]

    body = _problem(dr.put(f"/api/v1/media/{item}/note", json={"text": "あ" * 2001}), 422, "note-too-long")
    assert "2000" in body["detail"] and body["max_chars"] == 2000
    assert dr.put(f"/api/v1/media/{item}/note", json={"text": "あ" * 2000}).status_code == 200
    _problem(dr.put(f"/api/v1/media/{item}/note", json={"text": "写真\u202egpj.exe"}), 422, "bad-note")
    _problem(dr.put(f"/api/v1/media/{item}/note", json={"text": "\u200b"}), 422, "bad-note")
    huge = dr.put(f"/api/v1/media/{item}/note", json={"text": "x" * 9000})
    assert huge.status_code == 422 and huge.headers["content-type"].startswith("application/problem+json")
    cleared = dr.put(f"/api/v1/media/{item}/note", json={"text": "  \n "}).json()
    assert cleared["text"] == "" and cleared["updated_at"] is not None

    with ctx.db.read() as s:
        audited = s.execute(select(AuditEvent.action, AuditEvent.detail, AuditEvent.patient_id)
                            .where(AuditEvent.action.in_(("media.note", "patient.note"))).order_by(AuditEvent.id)).all()
        reads = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("%.note.read"))).all()
        events = s.scalars(select(Change.body).where(Change.kind == "note").order_by(Change.seq)).all()
    # The trail says who changed a note and how long it became, never the text.
    assert [(a, d["chars"], d["cleared"]) for a, d, _ in audited] == [
        ("media.note", len(saved["text"]), False), ("patient.note", len(p["text"]), False), ("media.note", 2000, False),
        ("media.note", 0, True)]
    assert {str(p) for _, _, p in audited} == {pid}
    assert all("text" not in d for _, d, _ in audited)
    assert sorted(set(reads)) == ["media.note.read", "patient.note.read"]
    assert [e["text"][:4] for e in events] == ["右下6 ", "パノラマ", "ああああ", ""]


def test_an_item_in_the_trash_keeps_its_note_readable_and_a_purge_takes_teeth_and_note(
        ctx: Context, dr: httpx.Client, photo: dict[str, Any]) -> None:
    item = photo["id"]
    dr.put(f"/api/v1/media/{item}/teeth", json={"teeth": [11]})
    dr.put(f"/api/v1/media/{item}/note", json={"text": "抜歯前"})
    assert dr.delete(f"/api/v1/media/{item}").json()["teeth"] == [11]
    assert dr.get(f"/api/v1/media/{item}/note").json()["text"] == "抜歯前"
    _problem(dr.put(f"/api/v1/media/{item}/note", json={"text": "x"}), 404, "media-not-found")
    assert dr.post(f"/api/v1/media/{item}/restore").json()["teeth"] == [11]
    dr.delete(f"/api/v1/media/{item}")
    assert trash.purge_media(ctx.db, ctx.blobs, uuid.UUID(item))
    with ctx.db.read() as s:
        assert s.scalar(select(MediaTooth.media_id)) is None and s.scalar(select(Note.entity_id)) is None


def test_a_clinics_tooth_notation_is_set_by_an_admin_and_read_with_the_clinics(
        ctx: Context, server: LiveServer, dr: httpx.Client, tenant: Tenant) -> None:
    clinic = str(tenant.clinic_ids[0])
    assert {c["tooth_notation"] for c in dr.get("/api/v1/clinics").json()["items"]} == {"fdi"}
    assert dr.put(f"/api/v1/clinics/{clinic}/tooth-notation", json={"tooth_notation": "palmer"}).status_code == 403
    boss = make_account(ctx, tenant, "admin-d", admin=True)
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {sign_in(server, boss)}"}) as admin:
        r = admin.put(f"/api/v1/clinics/{clinic}/tooth-notation", json={"tooth_notation": "palmer"})
        assert r.status_code == 200 and r.json() == {"id": clinic, "tooth_notation": "palmer"}
        _problem(admin.put(f"/api/v1/clinics/{clinic}/tooth-notation", json={"tooth_notation": "universal"}), 422,
                 "bad-notation")
        _problem(admin.put(f"/api/v1/clinics/{uuid.uuid4()}/tooth-notation", json={"tooth_notation": "fdi"}), 404,
                 "clinic-not-found")
    shown = {c["id"]: c["tooth_notation"] for c in dr.get("/api/v1/clinics").json()["items"]}
    assert shown == {clinic: "palmer", str(tenant.clinic_ids[1]): "fdi"}
    with ctx.db.read() as s:
        last = s.scalar(select(Change.body).where(Change.kind == "clinic").order_by(Change.seq.desc()).limit(1))
        audited = s.scalar(select(AuditEvent.detail).where(AuditEvent.action == "clinic.tooth_notation"))
    assert last is not None and last["tooth_notation"] == "palmer"  # relays learn it from the feed
    assert audited == {"clinic_id": clinic, "from": "fdi", "to": "palmer"}
