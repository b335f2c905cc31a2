"""The agent against a real server: complete files only, patients found or registered, sent once, moved after."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chairside.agent import reasons
from chairside.agent.runner import running
from chairside.agent.status import summary
from chairside.cli import app
from chairside.client import Client
from chairside.context import Context
from tests.agent.conftest import config, row_for, rows, wait_for
from tests.conftest import LiveServer
from tests.factories import Tenant, make_patient, make_tenant


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def media_of(api: Client, chart_no: str) -> list[dict[str, Any]]:
    found = [p for p in api.search_patients(chart_no) if p["chart_no"] == chart_no]
    assert len(found) <= 1
    return api.list_media(found[0]["id"]) if found else []


@pytest.mark.parametrize("opened", ["before the agent started", "while it watches"])
def test_a_half_written_file_waits_until_it_is_complete_then_is_sent_once_and_moved(
    server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path, opened: str,
) -> None:
    data = (media_dir / "clip.mp4").read_bytes()
    folder = watch / "00123 山田 太郎"
    folder.mkdir()
    cfg = config(watch, server.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))
    with contextlib.ExitStack() as stack:
        if opened == "before the agent started":  # no event will say it is open: the kernel is asked
            f = stack.enter_context((folder / "rec.mp4").open("wb"))
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(cfg.settle_s)  # already quiet when the agent finds it
            stack.enter_context(running(cfg))
        else:
            stack.enter_context(running(cfg))
            f = stack.enter_context((folder / "rec.mp4").open("wb"))
            f.write(data[: len(data) // 2])
            f.flush()
        # Long past settle_s and several rescans: a file still open is never taken, however quiet.
        time.sleep(3 * cfg.settle_s)
        assert rows(watch) == []
        f.write(data[len(data) // 2:])
        f.close()
        sent = wait_for(lambda: (r := row_for(watch, "rec.mp4")) and r.state == "sent" and r.moved and r, "sent")
    assert sent.sha256 == hashlib.sha256(data).hexdigest()
    assert not (folder / "rec.mp4").exists()
    assert (watch / ".sent" / "00123 山田 太郎" / "rec.mp4").read_bytes() == data
    items = media_of(api, "00123")
    assert [(i["id"], i["sha256"]) for i in items] == [(sent.media_id, sent.sha256)]
    patient = api.search_patients("00123")[0]
    assert (patient["name"], patient["name_kana"]) == ("山田 太郎", "山田 太郎")  # registered from the folder name


def test_existing_patient_is_found_by_chart_number_and_a_sidecar_registers_a_new_one_with_its_details(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    existing = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "00042", "鈴木 一郎", "スズキ イチロウ")
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "000421", "別人 次郎", "ベツジン ジロウ")  # a prefix
    (watch / "00042").mkdir()
    shutil.copy(media_dir / "photo.jpg", watch / "00042" / "photo.jpg")
    (watch / "visit").mkdir()
    shutil.copy(media_dir / "clip2.mp4", watch / "visit" / "rec-7.mp4")
    (watch / "visit" / "rec-7.mp4.json").write_text(
        '{"chart_no": "00777", "name": "佐藤 花子", "kana": "サトウ ハナコ", "birth_date": "1990-02-03", '
        '"sex": "female", "captured_at": "2026-12-07T10:30:00"}', encoding="utf-8")
    cfg = config(watch, server.url, tenant.token, layout="folder", clinic_id=str(tenant.clinic_ids[0]))
    with running(cfg):
        wait_for(lambda: len([r for r in rows(watch) if r.state == "sent" and r.moved]) == 2, "both sent")
    assert [i["sha256"] for i in api.list_media(existing.id)] == [sha(media_dir / "photo.jpg")]
    new = [p for p in api.search_patients("00777") if p["chart_no"] == "00777"]
    assert len(new) == 1
    assert (new[0]["name"], new[0]["name_kana"], new[0]["birth_date"], new[0]["sex"]) == (
        "佐藤 花子", "サトウ ハナコ", "1990-02-03", "female")
    [item] = api.list_media(new[0]["id"])
    assert item["captured_at"].startswith("2026-12-07T01:30:00")  # Japan time, stored in UTC
    assert (watch / ".sent" / "visit" / "rec-7.mp4.json").exists()  # the sidecar follows its file


def test_an_empty_mp4_fails_with_a_clear_reason_and_is_not_retried(
    server: LiveServer, tenant: Tenant, watch: Path, media_dir: Path,
) -> None:
    folder = watch / "00001 山田 太郎"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    shutil.copy(media_dir / "clip.mp4", folder / "fine.mp4")
    cfg = config(watch, server.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))
    with running(cfg):
        wait_for(lambda: (r := row_for(watch, "fine.mp4")) and r.state == "sent", "the good file sent")
        time.sleep(3 * cfg.retry_max_s)  # several retry periods pass
        empty = row_for(watch, "empty.mp4")
    assert empty is not None and empty.state == "failed"
    assert (empty.reason_ja, empty.reason_en) == reasons.EMPTY and empty.attempts == 0
    assert (folder / "empty.mp4").exists()  # left for someone to look at
    out = CliRunner().invoke(app, ["station", "status", "--watch", str(watch)])
    assert out.exit_code == 0, out.output
    assert "失敗" in out.output and "0 バイト" in out.output and "0 bytes" in out.output
    assert out.output.index("0 バイト") < out.output.index("0 bytes")  # Japanese first


def test_a_chart_folder_with_characters_windows_forbids(
    server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    folder = watch / "A:12<3>? 田中 花"
    folder.mkdir()
    shutil.copy(media_dir / "photo.png", folder / "x|y.png")
    with running(config(watch, server.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))):
        wait_for(lambda: (r := row_for(watch, "x_y.png")) and r.moved and r, "sent and moved", watch=watch)
    assert [i["sha256"] for i in media_of(api, "A:12<3>?")] == [sha(media_dir / "photo.png")]
    assert summary(watch)["counts"]["sent"] == 1
    stopped = summary(watch, now=time.time() + 60)["agent"]  # no heartbeat for a minute: shown as stopped
    assert stopped["running"] is False and "止まっています" in stopped["ja"]
    # What the agent writes itself a Windows PC can open (a share of this folder, a copy of .sent).
    assert (watch / ".sent" / "A_12_3__ 田中 花" / "x_y.png").read_bytes() == (media_dir / "photo.png").read_bytes()


def test_only_clinic_is_found_by_itself_a_file_with_no_chart_folder_fails_and_keep_sent_leaves_files(
    ctx: Context, server: LiveServer, watch: Path, media_dir: Path,
) -> None:
    single = make_tenant(ctx, "一院歯科", clinics=1)
    (watch / "00009 高橋 恵").mkdir()
    shutil.copy(media_dir / "photo.jpg", watch / "00009 高橋 恵" / "a.jpg")
    shutil.copy(media_dir / "photo.jpg", watch / "loose.jpg")
    with running(config(watch, server.url, single.token, keep_sent=True)), Client(server.url, single.token) as api:
        wait_for(lambda: (r := row_for(watch, "a.jpg")) and r.state == "sent", "sent")
        loose = wait_for(lambda: (r := row_for(watch, "loose.jpg")) and r.state == "failed" and r, "refused")
        [patient] = api.search_patients("00009")
        assert len(api.list_media(patient["id"])) == 1
        (watch / "loose.jpg").unlink()  # the desk dealt with it: it leaves the list
        wait_for(lambda: row_for(watch, "loose.jpg") is None, "the failed row forgotten")
    assert patient["clinic_id"] == str(single.clinic_ids[0])
    assert loose.reason_ja is not None and "カルテ番号のフォルダ" in loose.reason_ja
    assert (watch / "00009 高橋 恵" / "a.jpg").exists() and not (watch / ".sent").exists()


def test_a_patient_unknown_without_a_name_waits_until_the_desk_registers_them(
    ctx: Context, server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    (watch / "00500").mkdir()
    shutil.copy(media_dir / "photo.jpg", watch / "00500" / "a.jpg")
    with running(config(watch, server.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))):
        waiting = wait_for(lambda: (r := row_for(watch, "a.jpg")) and r.reason_ja and r, "a reason")
        assert waiting.state == "waiting" and "未登録" in (waiting.reason_ja or "")
        make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "00500", "伊藤 学", "イトウ マナブ")
        wait_for(lambda: (r := row_for(watch, "a.jpg")) and r.state == "sent", "sent once registered")
    assert len(media_of(api, "00500")) == 1
