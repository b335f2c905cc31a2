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
        # Run again without its journal: nothing is stored twice, not even the drawing.
        again = run("import", "--from", str(to), "--clinic", str(new.clinic_ids[0]), *local(new_ctx),
                    "--state", str(tmp_path / "other-state"))
        assert again.exit_code == 0 and again.json()["files"] == ssd.videos + ssd.photos
        assert len(drawing.list_for(new_ctx, new_operator, drawn)) == 1
        with new_ctx.db.read() as s:
            assert len(list(s.scalars(select(Media.id)))) == ssd.videos + ssd.photos
    finally:
        new_ctx.db.dispose()


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
    to = tmp_path / "one-patient"
    out = run("export", "--to", str(to), "--patient", str(chosen.id), "--server", server.url, "--token",
              tenant.token, "--english-names")
    assert out.exit_code == 0, out.stdout + out.stderr
    files = sorted(p.name for p in (to / "data").rglob("*.mp4"))
    assert len(files) == 2 and all("_video" in f for f in files)
    assert (to / "data" / "patients.csv").read_bytes().decode("utf-8-sig").startswith("chart_no,name,name_kana")
    bagit.Bag(str(to)).validate()
    unknown = run("export", "--to", str(tmp_path / "x"), "--patient", str(uuid.uuid4()), "--server", server.url,
                  "--token", tenant.token)
    assert unknown.exit_code == 2 and unknown.json()["error"] == "patient-not-found"
