"""`chairside export`: a whole contract as a BagIt bag plain file browsers read; resumable, read back, full disks."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import bagit
import pytest
from PIL import Image
from sqlalchemy import select

from chairside.context import Context, build_context
from chairside.db.models import Media, Patient
from chairside.media import annotations as drawing
from chairside.media import notes, tags, teeth
from chairside.settings import Settings
from chairside.transfer import csvfile, exporter
from chairside.transfer.journal import Journal
from chairside.transfer.sources import LocalSource
from tests.conftest import LiveServer
from tests.factories import Tenant, make_patient, make_tenant, operator
from tests.transfer.conftest import Ssd, local, run


def _import(ctx: Context, tenant: Tenant, ssd: Ssd, clinic: int = 0) -> None:
    out = run("import", "--from", str(ssd.root), "--clinic", str(tenant.clinic_ids[clinic]), *local(ctx))
    assert out.exit_code == 0, out.stdout + out.stderr


def _draw(ctx: Context, tenant: Tenant) -> uuid.UUID:
    with ctx.db.read() as s:
        photo = s.scalars(select(Media).where(Media.contract_id == tenant.contract_id, Media.kind == "image")
                          .order_by(Media.size)).first()
        assert photo is not None
    shapes: list[drawing.Pen | drawing.Arrow | drawing.Circle | drawing.Text] = [
        drawing.Pen(type="pen", color="#e53935", points=[(0.1, 0.1), (0.5, 0.5)]),
        drawing.Circle(type="circle", color="#1e88e5", start=(0.2, 0.2), end=(0.4, 0.6)),
        drawing.Arrow(type="arrow", color="#43a047", start=(0.9, 0.9), end=(0.6, 0.7)),
        drawing.Text(type="text", color="#000000", at=(0.1, 0.8), text="C1 う蝕"),
    ]
    drawing.create(ctx, operator(tenant.contract_id), photo.id, shapes)
    return photo.id


def _write_about(ctx: Context, tenant: Tenant) -> dict[str, object]:
    """Teeth, tags and notes on the first two items and a note on their patient: what a dentist wrote."""
    op = operator(tenant.contract_id)
    with ctx.db.read() as s:
        items = list(s.scalars(select(Media).where(Media.contract_id == tenant.contract_id)
                               .order_by(Media.patient_id, Media.captured_at, Media.id)))[:2]
    first, second = items
    teeth.set_teeth(ctx, op, first.id, [16, 17])
    tags.set_tags(ctx, op, first.id, ["術前", "説明用, 保険 | 自費"])  # a comma and a bar stay inside one tag
    notes.set_note(ctx, op, "media", first.id, "=右下6 根管治療\n2 回目の説明に使用")  # a formula-like start, 2 lines
    teeth.set_teeth(ctx, op, second.id, [85])
    notes.set_note(ctx, op, "patient", first.patient_id, "ラテックスアレルギー\n\"麻酔\" は少なめに")
    return {"first": first.id, "second": second.id, "patient": first.patient_id}


def _about(ctx: Context, contract_id: uuid.UUID, ids: dict[str, object]) -> tuple[object, ...]:
    op = operator(contract_id)
    first, second = ids["first"], ids["second"]
    assert isinstance(first, uuid.UUID) and isinstance(second, uuid.UUID)
    with ctx.db.read() as s:
        shown = teeth.of_items(s, [first, second])
        patient = s.get(Media, first)
        assert patient is not None
    by_item = tags.by_item(ctx, op, patient.patient_id)
    return (shown.get(first), shown.get(second), by_item.get(first), by_item.get(second),
            notes.get_note(ctx, op, "media", first).text, notes.get_note(ctx, op, "media", second).text,
            notes.get_note(ctx, op, "patient", patient.patient_id).text)


def test_export_writes_a_valid_bag_that_imports_back_losslessly(ctx: Context, tenant: Tenant, ssd: Ssd,
                                                                tmp_path: Path) -> None:
    _import(ctx, tenant, ssd)
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "=HYPERLINK(1)", "=cmd|' /C calc'!A0", "アタック")
    _draw(ctx, tenant)
    to = tmp_path / "ssd-out"
    out = run("export", "--to", str(to), "--contract", str(tenant.contract_id), *local(ctx))
    assert out.exit_code == 0, out.stdout + out.stderr
    summary = out.json()
    assert summary["complete"] and summary["bag_valid"] and summary["unverified"] == []
    assert summary["new_files"] == ssd.videos + ssd.photos and summary["drawings"] == 1

    bagit.Bag(str(to)).validate()  # the receiver's check: every payload file re-hashed by the bagit library
    data = to / "data"
    clinic = data / "テスト歯科 1"
    videos = sorted(p.relative_to(clinic).as_posix() for p in clinic.rglob("*_動画*.mp4"))
    assert len(videos) == ssd.videos and all(v.split("/")[0] in ("00123 山田 太郎", "00456 佐藤 花子") for v in videos)
    # Windows forbids ':' and '*': the folder name is made safe, the CSV keeps the exact chart number.
    assert [p.name for p in clinic.glob("A_12_3*")] == ["A_12_3 A_12_3"]
    png = next(clinic.rglob("*_描画1.png"))
    assert png.with_suffix(".json").is_file()
    with Image.open(png) as im:
        assert im.mode == "RGBA" and im.getchannel("A").getbbox() is not None  # something is drawn

    raw = (data / "patients.csv").read_bytes()
    assert raw.startswith(csvfile.BOM)
    text = raw.decode("utf-8-sig")
    assert "'=HYPERLINK(1)" in text and "'=cmd|" in text and "A:12*3" in text  # inert cells; exact chart number

    # The export read back into the clinic it came from: every item is recognised by its id, nothing is doubled.
    back = run("import", "--from", str(to), "--clinic", str(tenant.clinic_ids[0]), *local(ctx))
    assert back.exit_code == 0 and back.json()["layout"] == "chairside-export", back.stdout
    assert back.json()["files"] == ssd.videos + ssd.photos
    with ctx.db.read() as s:
        count = len(list(s.scalars(select(Media.id).where(Media.contract_id == tenant.contract_id))))
    assert count == ssd.videos + ssd.photos


def test_round_trip_into_a_new_contract_keeps_everything(ctx: Context, tenant: Tenant, other_tenant: Tenant,
                                                         ssd: Ssd, tmp_path: Path) -> None:
    _import(ctx, tenant, ssd)
    drawn = _draw(ctx, tenant)
    written = _write_about(ctx, tenant)
    to = tmp_path / "bag"
    assert run("export", "--to", str(to), "--contract", str(tenant.contract_id), *local(ctx)).exit_code == 0
    back = run("import", "--from", str(to), "--clinic", str(other_tenant.clinic_ids[0]), *local(ctx))
    assert back.exit_code == 1  # the same media ids belong to the first contract in this database: refused, listed
    assert len(back.json()["unverified"]) == ssd.videos + ssd.photos

    # Into a separate installation (its own database), the ids are free and every field comes back.
    fresh_data = tmp_path / "new-install"
    new_ctx = build_context(Settings.load(environ={}, data_dir=fresh_data))
    try:
        new = make_tenant(new_ctx, "移転先", clinics=1)
        ok = run("import", "--from", str(to), "--clinic", str(new.clinic_ids[0]), *local(new_ctx))
        assert ok.exit_code == 0 and ok.json()["files"] == ssd.videos + ssd.photos
        with ctx.db.read() as s:
            old = {(m.id, m.sha256, m.captured_at, m.filename, m.kind, m.size) for m in
                   s.scalars(select(Media).where(Media.contract_id == tenant.contract_id))}
            old_p = {(p.chart_no, p.name, p.name_kana, p.birth_date, p.sex) for p in
                     s.scalars(select(Patient).where(Patient.contract_id == tenant.contract_id))}
        with new_ctx.db.read() as s:
            new_m = {(m.id, m.sha256, m.captured_at, m.filename, m.kind, m.size) for m in s.scalars(select(Media))}
            new_p = {(p.chart_no, p.name, p.name_kana, p.birth_date, p.sex) for p in s.scalars(select(Patient))}
        assert new_m == old and new_p == old_p
        shapes = [a.shapes for a in drawing.list_for(ctx, operator(tenant.contract_id), drawn)]
        new_operator = operator(new.contract_id)
        assert [a.shapes for a in drawing.list_for(new_ctx, new_operator, drawn)] == shapes
        assert ok.json()["drawings"] == 1
        # The dentist's teeth, tags and notes (item and patient) come back as they were written.
        assert _about(new_ctx, new.contract_id, written) == _about(ctx, tenant.contract_id, written) == (
            [16, 17], [85], ["術前", "説明用, 保険 | 自費"], None, "=右下6 根管治療\n2 回目の説明に使用", "",
            "ラテックスアレルギー\n\"麻酔\" は少なめに")
        assert ok.json()["details"] == 3
        # What the new clinic writes after the import is kept by a second import: added to, never overwritten.
        new_op = operator(new.contract_id)
        first = written["first"]
        assert isinstance(first, uuid.UUID)
        tags.set_tags(new_ctx, new_op, first, ["術後"])
        notes.set_note(new_ctx, new_op, "media", first, "移転後のメモ")
        # Run again without its journal: nothing is stored twice, not even the drawing.
        again = run("import", "--from", str(to), "--clinic", str(new.clinic_ids[0]), *local(new_ctx),
                    "--state", str(tmp_path / "other-state"))
        assert again.exit_code == 0 and again.json()["files"] == ssd.videos + ssd.photos
        assert len(drawing.list_for(new_ctx, new_operator, drawn)) == 1
        kept = tags.by_item(new_ctx, new_op, _patient_of(new_ctx, first))[first]
        assert kept == sorted(["術後", "術前", "説明用, 保険 | 自費"])
        assert notes.get_note(new_ctx, new_op, "media", first).text == "移転後のメモ"
        with new_ctx.db.read() as s:
            assert len(list(s.scalars(select(Media.id)))) == ssd.videos + ssd.photos
    finally:
        new_ctx.db.dispose()


def _patient_of(ctx: Context, media_id: uuid.UUID) -> uuid.UUID:
    with ctx.db.read() as s:
        item = s.get(Media, media_id)
        assert item is not None
        return item.patient_id


def test_stopped_export_continues_without_rewriting(ctx: Context, tenant: Tenant, ssd: Ssd, tmp_path: Path) -> None:
    _import(ctx, tenant, ssd)
    to = tmp_path / "out"

    class Reboot(BaseException):
        pass

    def reboot(relpath: str) -> None:
        raise Reboot

    journal = Journal(exporter.journal_path(to))
    with pytest.raises(Reboot):
        exporter.run_export(LocalSource(ctx, tenant.contract_id, []), to, journal, after_file=reboot)
    journal.close()
    assert not list(to.rglob("*.part"))
    first = next(p for p in (to / "data").rglob("*") if p.is_file())
    done_before = len([p for p in (to / "data").rglob("*") if p.suffix in (".mp4", ".jpg", ".png")])
    stamp = first.stat().st_mtime_ns
    journal = Journal(exporter.journal_path(to))
    report = exporter.run_export(LocalSource(ctx, tenant.contract_id, []), to, journal)
    journal.close()
    assert report.complete and report.already_exported == done_before >= 1
    assert report.new_files == ssd.videos + ssd.photos - done_before
    assert first.stat().st_mtime_ns == stamp  # the file done before the reboot was not written again
    bagit.Bag(str(to)).validate()


@contextlib.contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs): ENOSPC comes from the kernel, not from a stub."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_full_target_disk_stops_clearly_and_continues_after_space_is_made(ctx: Context, tenant: Tenant, ssd: Ssd,
                                                                          tmp_path: Path) -> None:
    _import(ctx, tenant, ssd)
    total = sum(p.stat().st_size for p in ssd.root.rglob("*.mp4"))
    with tiny_disk(tmp_path / "small-ssd", f"{total // 2 // 1024}k") as disk:
        args = ["export", "--to", str(disk / "export"), "--contract", str(tenant.contract_id), *local(ctx)]
        full = run(*args)
        assert full.exit_code == 3, full.stdout + full.stderr
        assert full.json()["error"] == "target-full" and "ディスクがいっぱい" in full.json()["detail"]
        assert "run the same command again" in full.json()["detail"]
        assert not list(disk.rglob("*.part"))  # the half-written file was removed (it frees its space)
        subprocess.run(["mount", "-o", f"remount,size={total * 4 // 1024}k", str(disk)], check=True)
        again = run(*args)
        assert again.exit_code == 0, again.stdout + again.stderr
        assert again.json()["complete"] and again.json()["already_exported"] >= 1
        bagit.Bag(str(disk / "export")).validate()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_export_of_patients_through_the_sdk_with_english_names(ctx: Context, tenant: Tenant, ssd: Ssd,
                                                               server: LiveServer, tmp_path: Path) -> None:
    _import(ctx, tenant, ssd)
    with ctx.db.read() as s:
        chosen = s.scalars(select(Patient).where(Patient.chart_no == "00456")).one()
        item = s.scalars(select(Media).where(Media.patient_id == chosen.id).order_by(Media.id)).first()
        assert item is not None
    op = operator(tenant.contract_id)
    teeth.set_teeth(ctx, op, item.id, [36])
    tags.set_tags(ctx, op, item.id, ["術後", "説明用"])
    notes.set_note(ctx, op, "media", item.id, "+補綴 後")
    notes.set_note(ctx, op, "patient", chosen.id, "午前のみ来院可")
    to = tmp_path / "one-patient"
    out = run("export", "--to", str(to), "--patient", str(chosen.id), "--server", server.url, "--token",
              tenant.token, "--english-names")
    assert out.exit_code == 0, out.stdout + out.stderr
    files = sorted(p.name for p in (to / "data").rglob("*.mp4"))
    assert len(files) == 2 and all("_video" in f for f in files)
    assert (to / "data" / "patients.csv").read_bytes().decode("utf-8-sig").startswith("chart_no,name,name_kana")
    assert [r["note"] for r in csvfile.read_table(to / "data" / "patients.csv")] == ["午前のみ来院可"]
    rows = {r["media_id"]: r for r in csvfile.read_table(to / "data" / "media.csv")}
    assert (rows[str(item.id)]["teeth"], rows[str(item.id)]["tags"], rows[str(item.id)]["note"]) == (
        "36", "術後\n説明用", "+補綴 後")
    assert all(r["teeth"] == r["tags"] == r["note"] == "" for k, r in rows.items() if k != str(item.id))
    bagit.Bag(str(to)).validate()
    unknown = run("export", "--to", str(tmp_path / "x"), "--patient", str(uuid.uuid4()), "--server", server.url,
                  "--token", tenant.token)
    assert unknown.exit_code == 2 and unknown.json()["error"] == "patient-not-found"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_teeth_tags_and_notes_come_back_through_the_sdk(ctx: Context, tenant: Tenant, other_tenant: Tenant, ssd: Ssd,
                                                       server: LiveServer, tmp_path: Path) -> None:
    """An export imported with `--server` (a station token): the same details as with --data, through the API."""
    _import(ctx, tenant, ssd)
    written = _write_about(ctx, tenant)
    to = tmp_path / "bag"
    assert run("export", "--to", str(to), "--contract", str(tenant.contract_id), *local(ctx)).exit_code == 0
    # The same database holds the first contract's ids: give the items new ones, as another installation would.
    media_csv = to / "data" / "media.csv"
    rows = csvfile.read_table(media_csv)
    fresh = {r["media_id"]: str(uuid.uuid4()) for r in rows}
    media_csv.write_bytes(csvfile.render(list(exporter.MEDIA_COLUMNS), [
        [fresh[r["media_id"]] if c == "media_id" else r[c] for c in exporter.MEDIA_COLUMNS] for r in rows]))
    out = run("import", "--from", str(to), "--clinic", str(other_tenant.clinic_ids[0]), "--server", server.url,
              "--token", other_tenant.token, "--state", str(tmp_path / "state"))
    assert out.exit_code == 0, out.stdout + out.stderr
    assert out.json()["details"] == 3
    moved = {k: uuid.UUID(fresh[str(v)]) if k != "patient" else v for k, v in written.items()}
    mine = _about(ctx, tenant.contract_id, written)
    assert _about(ctx, other_tenant.contract_id, moved) == mine
