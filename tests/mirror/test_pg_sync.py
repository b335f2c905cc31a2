"""PostgreSQL synchronous replication (metadata window 0) and the old primary rejoined with pg_rewind.

Two PostgreSQL servers of the test's own (tests/mirror/pg.py), the primary's app and the mirror as
`chairside … serve` processes. With `chairside admin mirror sync --on`, a write the primary
acknowledged is on the standby before the answer: the primary site is lost (SIGKILL of the app,
immediate stop of its database) right after an acknowledged write, without waiting for anything,
and the promoted standby has it. The price is shown too: with the standby gone a write waits, and
`--off` releases it. Then the old primary, which took a write of its own after the split (a
diverged timeline), is rewound by `chairside mirror rejoin` and follows the new primary.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chairside.client import Client
from chairside.context import build_context
from chairside.mirror import postgres, service
from chairside.settings import Settings
from tests.conftest import free_port
from tests.factories import Tenant, make_tenant
from tests.mirror import pg
from tests.mirror.sites import chairside, cloud_site, mirror_site, wait_for


@pytest.fixture
def pair() -> Iterator[pg.PgPair]:
    if not pg.available():
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl, pg_rewind) are not installed")
    with pg.pg_pair() as made:
        yield made


def _seed(data: Path, url: str) -> tuple[Tenant, str]:
    ctx = build_context(Settings.load(environ={}, data_dir=data, database_url=url))
    try:
        return make_tenant(ctx, clinics=1), service.create_mirror(ctx, "Kobe DR")[1]
    finally:
        ctx.db.dispose()


def _sync(data: Path, url: str, on: bool) -> dict[str, str]:
    out: dict[str, str] = json.loads(chairside("admin", "--data", str(data), "--database-url", url, "mirror", "sync",
                                               "--on" if on else "--off").stdout)
    return out


@pytest.mark.timeout(600)  # two database servers and three sites on a shared 2-core machine
def test_with_sync_on_a_write_acknowledged_just_before_the_kill_is_at_the_promoted_standby_then_rejoin(
    tmp_path: Path, pair: pg.PgPair,
) -> None:
    tenant, token = _seed(tmp_path / "osaka", pair.url_a)
    figures = _sync(tmp_path / "osaka", pair.url_a, on=True)
    assert figures["synchronous_standby_names"] == 'FIRST 1 ("chairside_mirror")'
    wait_for(lambda: pair.scalar(pair.url_a, "SELECT sync_state FROM pg_stat_replication "
                                 "WHERE application_name = 'chairside_mirror'") == "sync", "the standby in sync")
    primary = cloud_site(tmp_path / "osaka", free_port(), pair.url_a).start()
    mirror = mirror_site(tmp_path / "kobe", free_port(), primary.url, token, pair.url_b).start()
    try:
        # The price: with the standby gone, a write waits; `--off` releases it (it was committed at the primary).
        pair.pg_ctl(pair.b, "-m", "fast", "-w", "stop")
        answers: list[int] = []
        body = {"clinic_id": str(tenant.clinic_ids[0]), "chart_no": "00100", "name": "待機 太郎",
                "name_kana": "タイキ タロウ"}
        waiting = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{primary.url}/api/v1/patients", json=body, headers={"Authorization": f"Bearer {tenant.token}"},
            timeout=60).status_code))
        waiting.start()
        waiting.join(3.0)
        assert waiting.is_alive() and not answers  # stalled: the standby has not confirmed
        assert _sync(tmp_path / "osaka", pair.url_a, on=False)["synchronous_standby_names"] == ""
        waiting.join(30)
        assert answers == [201]
        pair.pg_ctl(pair.b, "-w", "start")
        _sync(tmp_path / "osaka", pair.url_a, on=True)
        wait_for(lambda: pair.scalar(pair.url_a, "SELECT sync_state FROM pg_stat_replication "
                                     "WHERE application_name = 'chairside_mirror'") == "sync", "the standby back")

        # The kill right after an acknowledged write: nothing is waited for.
        acked: list[str] = []
        with Client(primary.url, tenant.token) as api:
            for i in range(20):
                acked.append(api.create_patient(tenant.clinic_ids[0], f"{i:05d}", "山田 太郎", "ヤマダ タロウ")["id"])
        primary.kill9()
        pair.lose_a()
        missing = [p for p in acked if not pair.has_row(pair.url_b, "patients", p)]
        assert missing == []  # metadata window 0: even the last acknowledged write is on the standby
        promoted = json.loads(chairside("mirror", "promote", "--data", str(mirror.data)).stdout)
        assert promoted["epoch"] == 2
        wait_for(lambda: mirror.role() == "cloud", "the mirror to serve as the cloud")
        with Client(mirror.url, tenant.token) as api:
            assert api.get_patient(acked[-1])["chart_no"] == "00019"

        # The old primary's server comes back alone and takes a write of its own: its timeline diverges.
        pair.pg_ctl(pair.a, "-w", "start")
        engine_sql = ("SET synchronous_commit = local; CREATE TABLE diverged (x int); INSERT INTO diverged VALUES (1)")
        pg.as_postgres(str(pair.bin / "psql"), "-h", "127.0.0.1", "-p", str(pair.ports[0]), "-U", "postgres",
                       "-d", "chairside", "-c", engine_sql)
        pair.lose_a()

        # Rejoin: rewound onto the new primary's timeline, started as its standby, followed by `mirror serve`.
        ctx = build_context(Settings.load(environ={}, data_dir=mirror.data, database_url=pair.url_b), upgrade=False)
        try:
            rejoin_token = service.create_mirror(ctx, "Osaka (rejoined)")[1]
        finally:
            ctx.db.dispose()
        refused = chairside("mirror", "rejoin", "--data", str(primary.data), "--primary", mirror.url, "--token",
                            rejoin_token, "--database-url", pair.url_a, check=False)
        assert refused.returncode == 2 and "--pgdata" in refused.stderr
        done = json.loads(chairside("mirror", "rejoin", "--data", str(primary.data), "--primary", mirror.url,
                                    "--token", rejoin_token, "--database-url", pair.url_a, "--pgdata", str(pair.a),
                                    "--source-database-url", pair.url_b).stdout)
        assert done["method"] == "pg_rewind" and done["epoch"] == 2, done
        assert pair.scalar(pair.url_a, "SELECT pg_is_in_recovery()") is True
        assert pair.scalar(pair.url_a, "SELECT to_regclass('diverged') IS NULL") is True, done  # the split write: gone
        with Client(mirror.url, tenant.token) as api:
            after = api.create_patient(tenant.clinic_ids[0], "20000", "佐藤 花子", "サトウ ハナコ")["id"]
        wait_for(lambda: pair.has_row(pair.url_a, "patients", after), "the rejoined standby to replay")
        rejoined = mirror_site(primary.data, free_port(), mirror.url, rejoin_token, pair.url_a).start()
        try:
            health = rejoined.health()
            assert health["role"] == "mirror" and health["epoch"] == 2
            since = time.time()
            wait_for(lambda: (rejoined.health().get("lag_s") is not None and rejoined.health()["blobs_behind"] == 0
                              and time.time() > since), "the rejoined mirror's first round")
        finally:
            rejoined.kill9()
    finally:
        primary.kill9()
        mirror.kill9()


@pytest.mark.timeout(600)  # two database servers and three sites on a shared 2-core machine
def test_when_pg_rewind_cannot_run_the_old_primary_is_set_aside_and_copied_afresh(
    tmp_path: Path, pair: pg.PgPair,
) -> None:
    """The fallback of `mirror rejoin`: pg_rewind fails (here: a pg_rewind that refuses), so a fresh base copy."""
    pair.scalar(pair.url_a, "SELECT 1")
    pg.as_postgres(str(pair.bin / "psql"), "-h", "127.0.0.1", "-p", str(pair.ports[0]), "-U", "postgres", "-d",
                   "chairside", "-c", "CREATE TABLE before_split (x int); INSERT INTO before_split VALUES (1)")
    wait_for(lambda: pair.scalar(pair.url_b, "SELECT to_regclass('before_split') IS NOT NULL") is True,
             "the standby to replay")
    pair.lose_a()
    assert pair.scalar(pair.url_b, "SELECT pg_promote(true, 60)") is True
    tools = pair.root / "bin"  # the real server binaries, but a pg_rewind that cannot rewind
    tools.mkdir()
    for tool in pair.bin.iterdir():
        (tools / tool.name).symlink_to(tool)
    (tools / "pg_rewind").unlink()
    (tools / "pg_rewind").write_text("#!/bin/sh\necho 'pg_rewind: fatal: target server needs to use either data "
                                     "checksums or \"wal_log_hints = on\"' >&2\nexit 1\n")
    (tools / "pg_rewind").chmod(0o755)
    done = postgres.rejoin(postgres.Cluster(pair.a, tools), pair.url_b)
    assert done["method"] == "pg_basebackup" and "wal_log_hints" in done["rewind_log"]
    assert Path(done["kept_aside"]).is_dir() and (Path(done["kept_aside"]) / "PG_VERSION").exists()  # kept
    assert pair.scalar(pair.url_a, "SELECT pg_is_in_recovery()") is True
    pg.as_postgres(str(pair.bin / "psql"), "-h", "127.0.0.1", "-p", str(pair.ports[1]), "-U", "postgres", "-d",
                   "chairside", "-c", "CREATE TABLE after_split (x int)")
    wait_for(lambda: pair.scalar(pair.url_a, "SELECT to_regclass('after_split') IS NOT NULL") is True,
             "the fresh copy to follow the new primary")
