"""`chairside mirror promote`: the mirror site takes over as the primary of the next epoch.

Steps, under the folder's lock (the follower is between two rounds, nothing half-copied):
1. Ask the primary whether it is alive. Alive and not fenced: refused, unless `--force`, which
   fences it first (`POST /api/v1/mirror/fence` with the next epoch: a compare-and-set there, so
   of two mirrors promoted at once exactly one gets the epoch; the other is refused).
2. The metadata becomes writable here: SQLite, `litestream restore` from the copied replica
   files into the folder's database; PostgreSQL, `pg_promote()` on the hot standby.
3. The database is migrated and this site's epoch row takes the next epoch.
4. The promotion's marker is written: the running `mirror serve` becomes the cloud.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from chairside.context import build_context
from chairside.db.engine import is_sqlite
from chairside.mirror import litestream, service, standby
from chairside.settings import Settings

PROBE_TIMEOUT_S = 3.0
DRAIN_WAIT_S = 1.5  # after fencing a live primary: Litestream's monitor and sync intervals (0.2 s each), a margin


class PromotionRefused(Exception):
    """A promotion that must not happen (the message says why and what to do, Japanese first)."""


@dataclass(frozen=True)
class PrimaryProbe:
    alive: bool
    epoch: int = 0
    fenced: bool = False


def probe(state: standby.StandbyState, transport: httpx.BaseTransport | None = None) -> PrimaryProbe:
    try:
        with httpx.Client(base_url=state.primary.rstrip("/"), transport=transport, timeout=PROBE_TIMEOUT_S,
                          headers={"Authorization": f"Bearer {state.token}"}) as http:
            r = http.get("/api/v1/mirror/hello")
    except httpx.HTTPError:
        return PrimaryProbe(alive=False)
    if r.status_code != 200:
        return PrimaryProbe(alive=False)
    body = r.json()
    return PrimaryProbe(True, max(int(body["epoch"]), int(body.get("fenced_epoch") or 0)), bool(body["fenced"]))


def promote(settings: Settings, *, force: bool = False, self_url: str | None = None,
            transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    data_dir = settings.data_dir
    state = standby.load(data_dir)
    if state is None:
        raise PromotionRefused(f"{data_dir} はミラーのフォルダではありません。 / {data_dir} is not a mirror's folder "
                               "(no mirror/state.json: start `chairside mirror serve` there first).")
    if state.role == "cloud":
        raise PromotionRefused(f"このミラーはすでに昇格済みです（epoch {state.epoch}）。 / This mirror was already "
                               f"promoted (epoch {state.epoch}).")
    started = time.monotonic()
    with standby.exclusive(data_dir), standby.exclusive(data_dir, "metadata.lock"):
        primary = probe(state, transport)
        epoch = max(state.epoch, primary.epoch) + 1
        if primary.alive and not primary.fenced:
            if not force:
                raise PromotionRefused(
                    f"本サイト {state.primary} はまだ動いています。本サイトを止めてから昇格するか、"
                    "--force で本サイトの書き込みを止めて昇格してください。 / The primary "
                    f"{state.primary} is still up: stop it first, or use --force, "
                    "which fences it (it refuses every write from then on).")
            from chairside.mirror.runtime import tell_old_primary

            if not tell_old_primary(state, epoch, self_url, transport):
                raise PromotionRefused(
                    f"別のミラーが先に epoch {epoch} を取りました。このミラーは昇格しません。"
                    " / Another mirror took epoch "
                    f"{epoch} first: this one is not promoted.")
            _drain(settings, state, transport)
        database_url = state.database_url or settings.database_url
        if is_sqlite(database_url):
            _restore_sqlite(data_dir, litestream.sqlite_path(database_url))
        else:
            _promote_postgres(database_url)
        ctx = build_context(Settings.load(data_dir=data_dir, database_url=database_url), role="cloud")
        try:
            epoch = service.take_epoch(ctx, epoch, uuid.UUID(state.mirror_id) if state.mirror_id else None)
        finally:
            ctx.db.dispose()
        standby.mark_promoted(data_dir, epoch)
    return {"role": "cloud", "epoch": epoch, "primary_was_alive": primary.alive,
            "took_s": round(time.monotonic() - started, 3), "database_url": _redacted(database_url)}


def _drain(settings: Settings, state: standby.StandbyState, transport: httpx.BaseTransport | None) -> None:
    """The old primary is fenced and up: wait out its last writes' shipping, then copy what is left, once."""
    from chairside.blobs import open_blob_store
    from chairside.mirror.fencing import CACHE_S
    from chairside.mirror.follower import Follower

    time.sleep(CACHE_S + DRAIN_WAIT_S)  # every process there refuses writes; Litestream shipped the last ones
    follower = Follower(settings.data_dir, open_blob_store(settings.blob_url), state, transport=transport,
                        metadata_gate=True)
    with follower.client() as http, ThreadPoolExecutor(4) as pool:
        follower.round(http, pool)


def _restore_sqlite(data_dir: Path, db_path: Path) -> None:
    replica = standby.litestream_copy(data_dir)
    if db_path.exists():
        raise PromotionRefused(
            f"{db_path} がすでにあります。別のフォルダへ移してから昇格してください。 / {db_path} already exists: move "
            "it aside before promoting (a mirror's folder has no database of its own).")
    if not litestream.list_files(replica):
        raise PromotionRefused("本サイトのデータベースの複製がまだ届いていません。昇格できません。 / No copy of the "
                               "primary's database has reached this mirror yet: it cannot be promoted.")
    partial = db_path.with_name(db_path.name + ".restoring")
    for leftover in (partial, partial.with_name(partial.name + "-wal"), partial.with_name(partial.name + "-shm")):
        leftover.unlink(missing_ok=True)
    litestream.restore(replica, partial)
    partial.rename(db_path)


def _promote_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                done = conn.execute(text("SELECT pg_promote(true, 60)")).scalar_one()
                if not done:
                    raise PromotionRefused("PostgreSQL の昇格が60秒以内に終わりませんでした。"
                                           " / PostgreSQL did not finish its promotion within 60 s.")
    finally:
        engine.dispose()


def _redacted(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://', 1)[0]}://…@{tail}" if sep else url
