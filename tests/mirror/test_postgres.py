"""The PostgreSQL variant: physical streaming replication to a hot standby, promoted with pg_promote().

The test starts its own two PostgreSQL servers (initdb, pg_ctl) on free loopback ports, as the
`postgres` user, and makes the standby with `pg_basebackup -R`. The primary site (its app and its
database server) is then lost at once (SIGKILL and `pg_ctl stop -m immediate`); the mirror is
promoted and serves as the cloud on the promoted standby.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from chairside.cli import app
from chairside.client import Client
from chairside.context import build_context
from chairside.mirror import service, standby
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import make_tenant
from tests.mirror.sites import cloud_site, mirror_site, wait_for

# The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin).
PG = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/15/bin"),
         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _as_postgres(*args: str) -> None:
    command = [*args] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {result.stderr[-1500:]}")


@pytest.fixture
def pg_pair(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    if not (PG / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="chairside-pg-"))  # outside pytest's 0700 folders: postgres must reach it
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    a, b, ports = root / "a", root / "b", (free_port(), free_port())
    _as_postgres(str(PG / "initdb"), "-D", str(a), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    with open(a / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = '127.0.0.1'\nport = {ports[0]}\nunix_socket_directories = '{root}'\n"
                   "wal_level = replica\nmax_wal_senders = 4\nfsync = on\n")
    with open(a / "pg_hba.conf", "a") as hba:
        hba.write("host replication postgres 127.0.0.1/32 trust\n")
    started = []
    try:
        _as_postgres(str(PG / "pg_ctl"), "-D", str(a), "-l", str(root / "a.log"), "-w", "start")
        started.append(a)
        _as_postgres(str(PG / "createdb"), "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres", "chairside")
        _as_postgres(str(PG / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres",
                     "-D", str(b), "-R", "-X", "stream", "--no-sync")
        conf_b = (b / "postgresql.conf").read_text().replace(f"port = {ports[0]}", f"port = {ports[1]}")
        (b / "postgresql.conf").write_text(conf_b)
        _as_postgres(str(PG / "pg_ctl"), "-D", str(b), "-l", str(root / "b.log"), "-w", "start")
        started.append(b)
        yield (f"postgresql+psycopg://postgres@127.0.0.1:{ports[0]}/chairside",
               f"postgresql+psycopg://postgres@127.0.0.1:{ports[1]}/chairside", a)
    finally:
        for folder in started:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG / "pg_ctl"), "-D", str(folder), "-m",
                            "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _standby_has(url: str, patient_id: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM patients WHERE id = :id"), {"id": patient_id}).first()
            return found is not None
    except Exception:  # the standby may not have replayed the schema yet
        return False
    finally:
        engine.dispose()


def test_a_postgres_primary_lost_its_hot_standby_is_promoted_and_holds_every_acknowledged_write(
    tmp_path: Path, media_dir: Path, pg_pair: tuple[str, str, Path],
) -> None:
    primary_db, standby_db, primary_pgdata = pg_pair
    ctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "osaka", database_url=primary_db))
    try:
        tenant, token = make_tenant(ctx, clinics=1), service.create_mirror(ctx, "Kobe DR")[1]
    finally:
        ctx.db.dispose()
    primary = cloud_site(tmp_path / "osaka", free_port(), primary_db).start()
    mirror = mirror_site(tmp_path / "kobe", free_port(), primary.url, token, standby_db).start()
    try:
        with Client(primary.url, tenant.token) as api:
            patient = api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
            item = api.upload(media_dir / "clip.mp4", patient["id"])
        since = time.time()
        wait_for(lambda: (s := standby.load(mirror.data)) is not None and s.blobs_behind == 0
                 and (s.caught_up_to or 0) > since, "the mirror's blobs")
        wait_for(lambda: _standby_has(standby_db, str(patient["id"])), "the standby to replay the patient")
        health = mirror.health()
        assert health["role"] == "mirror" and health["metadata_lag_s"] is None  # the database streams itself

        primary.kill9()  # the site is lost: its app and its database server at once
        _as_postgres(str(PG / "pg_ctl"), "-D", str(primary_pgdata), "-m", "immediate", "stop")
        result = CliRunner().invoke(app, ["mirror", "promote", "--data", str(mirror.data)])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["epoch"] == 2
        wait_for(lambda: mirror.role() == "cloud", "the mirror to serve as the cloud")
        with Client(mirror.url, tenant.token) as api:
            assert api.get_patient(patient["id"])["chart_no"] == "00001"
            assert api.get_media(item["id"])["sha256"] == item["sha256"]
            got = hashlib.sha256(b"".join(api.iter_content(item["id"]))).hexdigest()
            assert got == item["sha256"]
            api.create_patient(tenant.clinic_ids[0], "00002", "佐藤 花子", "サトウ ハナコ")  # the standby writes now
    finally:
        primary.kill9()
        mirror.kill9()
