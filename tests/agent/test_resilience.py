"""The ugly cases: a line that goes away mid-upload, a file renamed while it is sent, an agent killed and restarted.

The line between the agent and the server is the project's WAN emulator (tests/netem.py), slow
enough that the upload is caught in the middle.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from chairside.agent import reasons
from chairside.agent.runner import running
from chairside.cli import app
from chairside.client import Client
from tests.agent.conftest import config, row_for, rows, wait_for
from tests.conftest import LiveServer
from tests.factories import Tenant
from tests.netem import Faults, WanProxy

RATE = 2_000_000  # bits/s: the 0.9 MB clip takes about 4 s


def one_item(api: Client, chart_no: str) -> dict[str, object]:
    [patient] = [p for p in api.search_patients(chart_no) if p["chart_no"] == chart_no]
    items = api.list_media(patient["id"])
    assert len(items) == 1, items
    return items[0]


def mid_upload(watch: Path, name: str) -> None:
    wait_for(lambda: (r := row_for(watch, name)) and r.state == "sending" and r.upload_url and r.sent_bytes > 0,
             "the upload under way", watch=watch)


def test_a_server_that_goes_away_mid_upload_and_comes_back(
    server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    size = (media_dir / "clip.mp4").stat().st_size
    faults = Faults(rate_bps=RATE)
    with WanProxy(server.port, faults) as wan, \
            running(config(watch, wan.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))):
        (watch / "00321 木村 拓").mkdir()
        shutil.copy(media_dir / "clip.mp4", watch / "00321 木村 拓" / "rec.mp4")
        mid_upload(watch, "rec.mp4")
        shown = CliRunner().invoke(app, ["station", "status", "--watch", str(watch)])
        assert "動作中" in shown.output and "送信中 sending" in shown.output and "% (" in shown.output
        listed = json.loads(CliRunner().invoke(app, ["station", "status", "--watch", str(watch), "--json"]).output)
        assert listed["agent"]["running"] and listed["counts"]["sending"] == 1
        assert 0 < listed["files"][0]["sent_bytes"] < size
        wan.outage(True)
        away = wait_for(lambda: (r := row_for(watch, "rec.mp4")) and r.reason_ja and r, "a reason", watch=watch)
        assert away.state == "waiting" and away.reason_ja == reasons.AWAY[0]
        faults.rate_bps = None
        wan.outage(False)
        sent = wait_for(lambda: (r := row_for(watch, "rec.mp4")) and r.state == "sent" and r.moved and r, "sent",
                        watch=watch)
    item = one_item(api, "00321")
    assert (item["id"], item["sha256"]) == (sent.media_id, sent.sha256)
    assert faults.forwarded < 2 * size  # resumed from the server's offset, not sent again from the start
    assert len(rows(watch)) == 1


def test_a_file_renamed_while_it_is_uploaded_is_one_item_and_moved_under_its_new_name(
    server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    folder = watch / "00654 森 葵"
    folder.mkdir()
    faults = Faults(rate_bps=RATE)
    with WanProxy(server.port, faults) as wan, \
            running(config(watch, wan.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))):
        shutil.copy(media_dir / "clip.mp4", folder / "rec.mp4")
        mid_upload(watch, "rec.mp4")
        os.rename(folder / "rec.mp4", folder / "2026-12-07 初診.mp4")
        faults.rate_bps = None  # the rest goes at loopback speed
        sent = wait_for(lambda: (r := row_for(watch, "初診.mp4")) and r.state == "sent" and r.moved and r, "sent",
                        watch=watch)
    assert one_item(api, "00654")["id"] == sent.media_id
    assert len(rows(watch)) == 1
    assert (watch / ".sent" / "00654 森 葵" / "2026-12-07 初診.mp4").read_bytes() == \
        (media_dir / "clip.mp4").read_bytes()
    assert list(folder.iterdir()) == []


def test_an_agent_killed_mid_upload_and_started_again_makes_one_item(
    server: LiveServer, tenant: Tenant, api: Client, watch: Path, media_dir: Path,
) -> None:
    size = (media_dir / "clip.mp4").stat().st_size
    (watch / "00987 林 蓮").mkdir()
    faults = Faults(rate_bps=RATE)
    with WanProxy(server.port, faults) as wan:
        env = {**os.environ, "CHAIRSIDE_STATION_TOKEN": tenant.token}
        proc = subprocess.Popen(
            [sys.executable, "-m", "chairside", "station", "agent", "--watch", str(watch), "--server", wan.url,
             "--clinic", str(tenant.clinic_ids[0]), "--settle-seconds", "0.5", "--rescan-seconds", "0.5",
             "--chunk-mib", "0.0625"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            shutil.copy(media_dir / "clip.mp4", watch / "00987 林 蓮" / "rec.mp4")
            mid_upload(watch, "rec.mp4")
            before = row_for(watch, "rec.mp4")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert before is not None and before.state == "sending"
        faults.rate_bps = None
        with running(config(watch, wan.url, tenant.token, clinic_id=str(tenant.clinic_ids[0]))):
            sent = wait_for(lambda: (r := row_for(watch, "rec.mp4")) and r.state == "sent" and r.moved and r, "sent",
                            watch=watch)
    assert sent.media_id == before.media_id
    assert one_item(api, "00987")["id"] == sent.media_id
    assert faults.forwarded < 2 * size  # the restart resumed the upload it had begun
    assert len(rows(watch)) == 1


def test_the_command_refuses_what_cannot_work(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["station", "agent", "--watch", str(tmp_path / "nope"), "--server",
                                  "http://127.0.0.1:9", "--token", "t"])
    assert missing.exit_code == 2 and "監視フォルダがありません" in missing.output
    layout = runner.invoke(app, ["station", "agent", "--watch", str(tmp_path), "--server", "http://127.0.0.1:9",
                                 "--token", "t", "--layout", "flat"])
    assert layout.exit_code == 2 and "--layout" in layout.output
    status = runner.invoke(app, ["station", "status", "--watch", str(tmp_path)])
    assert status.exit_code == 2 and "まだ監視されていません" in status.output
