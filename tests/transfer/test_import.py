"""`chairside import`: a clinic's SSD brought in through the services, resumable, verified, never duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Contract, Media, Patient
from chairside.media import notes
from chairside.transfer import csvfile, importer
from chairside.transfer.journal import Journal
from chairside.transfer.progress import NoProgress, TransferError
from chairside.transfer.targets import LocalTarget
from tests.conftest import LiveServer
from tests.factories import Tenant, operator
from tests.transfer.conftest import Ssd, local, run


def _media_count(ctx: Context, contract_id: object) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Media).where(Media.contract_id == contract_id)) or 0)


def test_import_folder_tree_registers_patients_and_verifies_every_file(ctx: Context, tenant: Tenant, ssd: Ssd) -> None:
    clinic = str(tenant.clinic_ids[0])
    dry = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["files"] == ssd.videos + ssd.photos and dry.json()["video_hours"] > 0
    assert _media_count(ctx, tenant.contract_id) == 0  # a dry run stores nothing

    out = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx))
    assert out.exit_code == 0, out.stdout + out.stderr
    summary = out.json()
    assert summary["files"] == ssd.videos + ssd.photos and summary["unverified"] == []
    assert summary["bytes"] == sum(p.stat().st_size for p in ssd.root.rglob("*")
                                   if p.suffix.lower() in (".mp4", ".jpg", ".png") and p.name not in
                                   ("empty.mp4", "cut.mp4"))
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert "0 バイト" in reasons["00123 山田太郎/2019/empty.mp4"]
    assert "00123 山田太郎/2019/cut.mp4" in reasons and "00123 山田太郎/2019/notes.txt" in reasons
    assert not any("Thumbs.db" in p for p in reasons)
    assert summary["duplicates"] == [{"path": "00456/copy-of-rec1.mp4", "same_as": "00123 山田太郎/2019/rec 1.mp4"}]
    assert {e["line"] for e in summary["csv_errors"]} == {3, 4} and summary["csv_encoding"] == "cp932"
    assert 0 < summary["video_hours"] < 0.01 and summary["plan"]["plan_hours"] == 100

    with ctx.db.read() as s:
        patients = {p.chart_no: p for p in s.scalars(select(Patient).where(Patient.contract_id == tenant.contract_id))}
        assert set(patients) == {"00123", "00456", "A:12*3"}
        assert patients["00123"].name == "山田 太郎" and str(patients["00123"].birth_date) == "1980-04-01"
        assert patients["00456"].sex == "female" and patients["A:12*3"].name == "A:12*3"
        items = list(s.scalars(select(Media).where(Media.contract_id == tenant.contract_id)))
        assert {m.source for m in items} == {"migration"} and len(items) == ssd.videos + ssd.photos
        contract = s.get(Contract, tenant.contract_id)
        assert contract is not None and contract.stored_video_ms > 0

    again = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx))
    assert again.exit_code == 0 and again.json()["new_files"] == 0
    assert again.json()["already_imported"] == ssd.videos + ssd.photos
    assert _media_count(ctx, tenant.contract_id) == ssd.videos + ssd.photos

    # Without the journal (another PC, deleted state) the ids derived from the files still prevent duplicates.
    fresh = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx),
                "--state", str(ssd.root.parent / "other-state"))
    assert fresh.exit_code == 0 and fresh.json()["new_files"] == ssd.videos + ssd.photos
    assert _media_count(ctx, tenant.contract_id) == ssd.videos + ssd.photos


def test_missing_or_unreadable_source_is_an_error_not_nothing(ctx: Context, tenant: Tenant, tmp_path: Path) -> None:
    clinic = str(tenant.clinic_ids[0])
    missing = run("import", "--from", str(tmp_path / "not-plugged-in"), "--clinic", clinic, *local(ctx))
    assert missing.exit_code == 2 and missing.json()["error"] == "source-missing"
    (tmp_path / "a-file").write_text("x")
    not_dir = run("import", "--from", str(tmp_path / "a-file"), "--clinic", clinic, *local(ctx), "--dry-run")
    assert not_dir.exit_code == 2 and "見つからないか読めません" in not_dir.json()["detail"]
    unknown = run("import", "--from", str(tmp_path), "--clinic", "6f1d3c2e-8a7b-5e4f-9c0d-1b2a3c4d5e6f", *local(ctx))
    assert unknown.exit_code == 2 and unknown.json()["error"] == "unknown-clinic"


def test_unplugged_source_mid_import_stops_and_a_rerun_continues(ctx: Context, tenant: Tenant, ssd: Ssd,
                                                                 tmp_path: Path) -> None:
    away = tmp_path / "unplugged"
    journal = Journal(tmp_path / "state" / "import.sqlite")
    target = LocalTarget(ctx, tenant.clinic_ids[0], tmp_path / "staging")
    done: list[str] = []

    def unplug(relpath: str) -> None:
        done.append(relpath)
        if len(done) == 2:
            ssd.root.rename(away)  # the SSD's cable pulled: the whole tree disappears

    with pytest.raises(TransferError) as stopped:
        importer.run_import(ssd.root, tenant.clinic_ids[0], target, journal, after_file=unplug)
    assert stopped.value.code == "source-gone" and "続きから再開" in stopped.value.message
    before = _media_count(ctx, tenant.contract_id)
    assert 0 < before < ssd.videos + ssd.photos

    away.rename(ssd.root)  # plugged in again
    report = importer.run_import(ssd.root, tenant.clinic_ids[0], target, journal)
    assert report.complete and report.already_imported == before and report.files == ssd.videos + ssd.photos
    assert _media_count(ctx, tenant.contract_id) == ssd.videos + ssd.photos
    assert list((tmp_path / "staging").iterdir()) == []  # no staging copy left behind
    journal.close()


def test_killed_in_the_middle_of_a_file_leaves_nothing_half_imported(ctx: Context, tenant: Tenant, ssd: Ssd,
                                                                    tmp_path: Path) -> None:
    class Killed(BaseException):
        pass

    class DieMidFile(NoProgress):
        def advance(self, n: int) -> None:
            raise Killed  # the process dies after the first chunk of the first file

    journal = Journal(tmp_path / "j.sqlite")
    target = LocalTarget(ctx, tenant.clinic_ids[0], tmp_path / "staging")
    with pytest.raises(Killed):
        importer.run_import(ssd.root, tenant.clinic_ids[0], target, journal, progress=DieMidFile())
    assert _media_count(ctx, tenant.contract_id) == 0 and list((tmp_path / "staging").iterdir()) == []
    report = importer.run_import(ssd.root, tenant.clinic_ids[0], target, journal)
    assert report.complete and report.new_files == ssd.videos + ssd.photos
    journal.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_import_through_the_sdk_to_a_server(ctx: Context, tenant: Tenant, ssd: Ssd, server: LiveServer,
                                            tmp_path: Path) -> None:
    args = ["import", "--from", str(ssd.root), "--clinic", str(tenant.clinic_ids[0]), "--server", server.url,
            "--token", tenant.token, "--state", str(tmp_path / "state")]
    out = run(*args)
    assert out.exit_code == 0, out.stdout + out.stderr
    summary = out.json()
    assert summary["files"] == ssd.videos + ssd.photos and summary["plan"]["plan_hours"] is None
    again = run(*args)
    assert again.json()["already_imported"] == ssd.videos + ssd.photos
    with Client(server.url, tenant.token) as api:
        found = [p for p in api.search_patients("00123") if p["chart_no"] == "00123"]
        assert len(found) == 1 and len(api.list_media(found[0]["id"])) == 4 - 2  # clip + photo (0-byte, cut skipped)
    assert _media_count(ctx, tenant.contract_id) == ssd.videos + ssd.photos


def test_a_patients_csv_remarks_column_becomes_the_patients_note_and_never_overwrites_one(
        ctx: Context, tenant: Tenant, ssd: Ssd) -> None:
    (ssd.root / "patients.csv").write_bytes(csvfile.BOM + 'カルテ番号,氏名,備考\r\n00123,山田 太郎,"金属アレルギー\r\n'
                                            '午前のみ"\r\n00456,佐藤 花子,\r\n'.encode())
    clinic = str(tenant.clinic_ids[0])
    out = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx))
    assert out.exit_code == 0, out.stdout + out.stderr
    assert out.json()["details"] == 1
    op = operator(tenant.contract_id)
    with ctx.db.read() as s:
        ids = {p.chart_no: p.id for p in s.scalars(select(Patient).where(Patient.contract_id == tenant.contract_id))}
    assert notes.get_note(ctx, op, "patient", ids["00123"]).text == "金属アレルギー\n午前のみ"
    assert notes.get_note(ctx, op, "patient", ids["00456"]).text == ""

    # The clinic edits the note; the same SSD imported again (without its journal) leaves the edit alone.
    notes.set_note(ctx, op, "patient", ids["00123"], "金属アレルギー（チタンは可）")
    again = run("import", "--from", str(ssd.root), "--clinic", clinic, *local(ctx),
                "--state", str(ssd.root.parent / "other-state"))
    assert again.exit_code == 0, again.stdout + again.stderr
    assert notes.get_note(ctx, op, "patient", ids["00123"]).text == "金属アレルギー（チタンは可）"
