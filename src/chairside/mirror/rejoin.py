"""`chairside mirror rejoin`: the old primary's folder becomes the mirror of the new primary.

After a promotion the old primary is fenced. Rejoining it, in its own folder:
1. The new primary is asked who it is (`GET /api/v1/mirror/hello` with the new mirror token made
   there): it must answer as the same deployment, and as a primary that is not fenced.
2. The old metadata is put aside, never deleted (forensics: writes the old primary acknowledged
   alone after the mirror's last copy are only there): SQLite, the database and its Litestream
   files move to `DATA/before-rejoin-<time>/`; PostgreSQL (`--pgdata`), the server is rewound with
   `pg_rewind` to the new primary's timeline, or, when that is impossible, its data directory is
   moved aside and a fresh `pg_basebackup` taken (mirror/postgres.py); it then runs as the standby.
3. The blobs stay: they are content-addressed and verified, so the follower fetches only those it
   lacks. `mirror/state.json` now names the new primary; `chairside mirror serve` with the same
   options then follows it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from chairside.mirror import postgres, standby
from chairside.mirror.promote import PROBE_TIMEOUT_S


class RejoinRefused(Exception):
    """A rejoin that must not happen; the message says why and what to do (Japanese first)."""


SQLITE_FILES = ("chairside.db", "chairside.db-wal", "chairside.db-shm", "litestream.yml", "litestream", "mirror")


def _hello(primary: str, token: str, transport: httpx.BaseTransport | None) -> dict[str, Any]:
    try:
        with httpx.Client(base_url=primary.rstrip("/"), transport=transport, timeout=PROBE_TIMEOUT_S * 3,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            r = http.get("/api/v1/mirror/hello")
    except httpx.HTTPError as e:
        raise RejoinRefused(f"新しい本サイト {primary} に接続できません（{type(e).__name__}）。 / The new primary "
                            f"{primary} cannot be reached ({type(e).__name__}): check the URL and the link.") from e
    if r.status_code == 401:
        raise RejoinRefused("このミラー用トークンは新しい本サイトで使えません。新しい本サイトで "
                            "`chairside admin mirror create` を実行してください。 / This mirror token is not valid "
                            "at the new primary: make one there with `chairside admin mirror create`.")
    if r.status_code != 200:
        raise RejoinRefused(f"新しい本サイトが {r.status_code} を返しました。 / "
                            f"The new primary answered {r.status_code}.")
    body: dict[str, Any] = r.json()
    if body.get("fenced"):
        raise RejoinRefused(f"{primary} も書き込みを止められています（fenced）。最新の本サイトのURLを指定してください。"
                            f" / {primary} is fenced too: name the primary of the newest epoch.")
    return body


def _sqlite_deployment(db: Path) -> str | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT deployment_id FROM site_state WHERE id = 1").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return None if row is None else str(uuid.UUID(str(row[0])))


def _not_serving(data_dir: Path) -> None:
    """The old primary's process must be stopped: while it runs with a mirror registered it holds this lock."""
    path = data_dir / "litestream.lock"
    if not path.exists():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RejoinRefused(f"{data_dir} の `chairside cloud serve` がまだ動いています。止めてから実行してください。"
                            f" / The old primary's server on {data_dir} is still running: stop it first.") from None
    finally:
        os.close(fd)


def rejoin(data_dir: Path, primary: str, token: str, *, database_url: str | None = None,
           pgdata: Path | None = None, source_database_url: str | None = None, pg_bin: Path | None = None,
           transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    data_dir = data_dir.resolve()
    hello = _hello(primary, token, transport)
    deployment = str(hello["deployment_id"])
    _not_serving(data_dir)
    out: dict[str, Any] = {"primary": primary, "epoch": hello["epoch"], "deployment_id": deployment}
    if database_url is None:
        mine = _sqlite_deployment(data_dir / "chairside.db")
        if mine is not None and mine != deployment:
            raise RejoinRefused(
                f"wrong-primary: {primary} はこのフォルダの本サイト（{mine}）とは別の本サイトです（{deployment}）。"
                f" / {primary} is another deployment ({deployment}) than this folder's ({mine}): check --primary.")
        aside = data_dir / f"before-rejoin-{time.strftime('%Y%m%dT%H%M%S')}"
        moved = []
        for name in SQLITE_FILES:
            if (data_dir / name).exists():
                aside.mkdir(exist_ok=True)
                (data_dir / name).rename(aside / name)
                moved.append(name)
        out |= {"metadata": "litestream", "kept_aside": str(aside) if moved else None}
    else:
        if pgdata is None or source_database_url is None:
            raise RejoinRefused("PostgreSQL: --pgdata（旧本サイトのデータディレクトリ）と "
                                "--source-database-url（新しい本サイトのデータベース）が必要です。 / PostgreSQL: "
                                "--pgdata (the old primary's data directory) and --source-database-url (the new "
                                "primary's database) are needed.")
        cluster = postgres.Cluster(pgdata.resolve(), pg_bin or postgres.default_bin_dir())
        try:
            out |= {"metadata": "postgresql", **postgres.rejoin(cluster, source_database_url)}
        except postgres.PostgresStepFailed as e:
            raise RejoinRefused(f"PostgreSQL の再参加に失敗しました: {e} / PostgreSQL rejoin failed: {e}") from e
        for name in ("mirror",):  # a folder that was a mirror before: its old promotion marker and copies
            if (data_dir / name).exists():
                aside = data_dir / f"before-rejoin-{time.strftime('%Y%m%dT%H%M%S')}"
                aside.mkdir(exist_ok=True)
                (data_dir / name).rename(aside / name)
    state = standby.StandbyState(primary=primary, token=token, database_url=database_url, deployment_id=deployment,
                                 epoch=int(hello["epoch"]))
    standby.save(data_dir, state)
    out["next"] = (f"chairside mirror serve --data {data_dir} --primary {primary} --token …"
                   + (" --database-url …" if database_url else ""))
    return out
