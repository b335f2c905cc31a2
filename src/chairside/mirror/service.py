"""The primary's side of mirroring: registered mirrors, their credentials, what each has verified, the epoch.

A mirror is a standby site that follows this cloud (docs/disaster-recovery.md). It is registered
here (`chairside admin mirror create`), gets a token shown once and stored as SHA-256, and reads
the changes feed of every contract through `GET /api/v1/mirror/pending` to copy each blob the
feed names. After verifying a blob's SHA-256 it reports how far it got, per contract
(`MirrorProgress`): that is what the lag figures and "stored at both sites" are computed from.

The epoch (`SiteState`, one row) says which promotion this site belongs to. A promotion takes the
next epoch; a site that hears of a higher epoch than its own is fenced: it refuses every write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chairside.auth.tokens import new_token, token_hash
from chairside.context import Context
from chairside.db.models import Change, Contract, Media, Mirror, MirrorProgress, SiteState, utcnow
from chairside.errors import Problem

MIRROR_PREFIX = "cs_mr"
BLOB_KINDS = ("media",)  # feed events whose body names blobs (sha256, thumb_sha256)


def create_mirror(ctx: Context, name: str) -> tuple[Mirror, str]:
    """Register a mirror site; answers the row and its token (shown once, stored hashed)."""
    if ctx.db.key is not None:  # Litestream reads pages in the clear: SQLCipher's fail ("file is not a database")
        raise Problem(
            409, "暗号化された SQLite データベースは Litestream でミラーできません。ミラーを使うサイトは "
            "PostgreSQL（ストレージ側の暗号化）にするか、暗号化バックアップ（chairside backup）で守ってください / "
            "An encrypted SQLite database "
            "cannot be shipped by Litestream to a mirror: run a mirrored site on PostgreSQL (with the storage layer's "
            "encryption), or protect it with the encrypted backups (chairside backup).",
            code="mirror-encrypted-sqlite")
    token = new_token(MIRROR_PREFIX)
    with ctx.db.session() as s:
        site(s)
        mirror = Mirror(name=name.strip()[:200] or "mirror", token_hash=token_hash(token))
        s.add(mirror)
        s.flush()
    return mirror, token


def list_mirrors(ctx: Context) -> list[Mirror]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Mirror).order_by(Mirror.created_at)))


def revoke_mirror(ctx: Context, mirror_id: uuid.UUID) -> Mirror:
    with ctx.db.session() as s:
        mirror = s.get(Mirror, mirror_id)
        if mirror is None:
            raise LookupError(f"no mirror {mirror_id}")
        if mirror.revoked_at is None:
            mirror.revoked_at = utcnow()
        return mirror


def unknown_token() -> Problem:
    return Problem(
        401, "このミラー用トークンはこの本サイトでは使えません。接続先のURLと、本サイトで `chairside admin mirror "
        "create` が出したトークンを確認してください。 / This mirror token is not valid at this primary: check the "
        "primary's URL and the token `chairside admin mirror create` printed there.",
        code="mirror-token", headers={"WWW-Authenticate": "Bearer"})


def authenticate(ctx: Context, token: str | None) -> Mirror:
    """The mirror a bearer token belongs to; 401 for no token, an unknown one or a revoked mirror."""
    if not token or not token.startswith(MIRROR_PREFIX + "_"):
        raise unknown_token()
    now = utcnow()
    with ctx.db.session() as s:
        site(s)
        mirror = s.scalar(select(Mirror).where(Mirror.token_hash == token_hash(token)))
        if mirror is None:
            raise unknown_token()
        if mirror.revoked_at is not None:
            raise Problem(401, "このミラーは本サイトで無効化されています。新しいトークンを発行してください。"
                          " / This mirror "
                          "was revoked at the primary: create a new one with `chairside admin mirror create`.",
                          code="mirror-revoked", headers={"WWW-Authenticate": "Bearer"})
        mirror.last_seen_at = now
        return mirror


# --- the epoch ----------------------------------------------------------------------------------------------

def site(s: Session) -> SiteState:
    """This site's state row, made on first use (a new deployment: epoch 1)."""
    row = s.get(SiteState, 1)
    if row is None:  # migration 0011 makes the row; this is a database built otherwise. Two first requests race:
        try:         # the loser's insert fails in its savepoint and it reads the winner's row.
            with s.begin_nested():
                s.add(SiteState(id=1, deployment_id=uuid.uuid4(), epoch=1))
        except IntegrityError:
            pass
        row = s.get(SiteState, 1, populate_existing=True)
        assert row is not None
    return row


@dataclass(frozen=True)
class Epoch:
    deployment_id: uuid.UUID
    epoch: int
    fenced_epoch: int | None
    fenced_primary: str | None

    @property
    def fenced(self) -> bool:
        return self.fenced_epoch is not None and self.fenced_epoch > self.epoch


def read_epoch(ctx: Context) -> Epoch:
    with ctx.db.read() as s:
        row = s.get(SiteState, 1)
        if row is not None:
            return Epoch(row.deployment_id, row.epoch, row.fenced_epoch, row.fenced_primary)
    with ctx.db.session() as s:  # the first time only
        row = site(s)
        return Epoch(row.deployment_id, row.epoch, row.fenced_epoch, row.fenced_primary)


def fence(ctx: Context, epoch: int, primary: str | None) -> bool:
    """Record that epoch `epoch` was taken elsewhere (by `primary`); this site then refuses writes.

    Compare-and-set: answers False when this site already is at, or heard of, that epoch or a
    newer one, so of two mirrors claiming the same next epoch here exactly one succeeds.
    """
    with ctx.db.session() as s:
        row = site(s)
        current = max(row.epoch, row.fenced_epoch or 0)
        if epoch <= current:
            return False
        claimed = s.execute(
            update(SiteState).where(SiteState.id == 1, SiteState.epoch == row.epoch,
                                    func.coalesce(SiteState.fenced_epoch, 0) == (row.fenced_epoch or 0))
            .values(fenced_epoch=epoch, fenced_primary=(primary or "")[:500] or None, fenced_at=utcnow())
        )
        return bool(getattr(claimed, "rowcount", 0) == 1)


def take_epoch(ctx: Context, at_least: int, promoted_mirror: uuid.UUID | None = None) -> int:
    """Become the primary of a new epoch (promotion): the next one after every epoch known here and `at_least`.

    The promoted mirror's own registration (in the primary's database it restored) is revoked: it is the primary now.
    """
    with ctx.db.session() as s:
        if promoted_mirror is not None:
            s.execute(update(Mirror).where(Mirror.id == promoted_mirror, Mirror.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))
        row = site(s)
        epoch = max(row.epoch + 1, at_least)  # the epoch this mirror claimed at the old primary, when it could
        if (row.fenced_epoch or 0) > epoch:  # a newer claim reached the old primary before its last shipping
            epoch = (row.fenced_epoch or 0) + 1
        row.epoch = epoch
        row.fenced_epoch = row.fenced_primary = row.fenced_at = None
        row.promoted_at = utcnow()
        return row.epoch


# --- what a mirror has yet to copy ----------------------------------------------------------------------------

def _progress(s: Session, mirror_id: uuid.UUID) -> dict[uuid.UUID, int]:
    rows = s.execute(select(MirrorProgress.contract_id, MirrorProgress.seq)
                     .where(MirrorProgress.mirror_id == mirror_id))
    return {contract_id: seq for contract_id, seq in rows}


def blobs_of(kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The blobs a feed event names: a media item's content and its thumbnail."""
    if kind not in BLOB_KINDS:
        return []
    out = [{"sha256": body["sha256"], "size": int(body["size"])}]
    if body.get("thumb_sha256"):
        out.append({"sha256": body["thumb_sha256"], "size": None})
    return out


def pending(ctx: Context, mirror: Mirror, limit: int = 200) -> dict[str, Any]:
    """The next events after the mirror's cursors (every contract), with the blobs they name, and the figures."""
    items: list[dict[str, Any]] = []
    with ctx.db.read() as s:
        done = _progress(s, mirror.id)
        contracts = list(s.execute(select(Contract.id, Contract.feed_seq)))
        for contract_id, head in contracts:
            after = done.get(contract_id, 0)
            if head <= after or len(items) >= limit:
                continue
            rows = s.scalars(select(Change).where(Change.contract_id == contract_id, Change.seq > after)
                             .order_by(Change.seq).limit(limit - len(items)))
            items.extend({"contract_id": str(c.contract_id), "seq": c.seq, "kind": c.kind, "id": str(c.entity_id),
                          "at": c.at, "blobs": blobs_of(c.kind, c.body)} for c in rows)
        figures = lag(s, mirror.id)
    return {"items": items, "behind": figures["blobs_behind"], "lag_s": figures["lag_s"], "now": utcnow()}


def record_progress(ctx: Context, mirror: Mirror, cursors: dict[uuid.UUID, int]) -> None:
    """The mirror verified every blob up to `seq` of each contract: keep the highest seq."""
    now = utcnow()
    with ctx.db.session() as s:
        done = _progress(s, mirror.id)
        for contract_id, seq in cursors.items():
            if contract_id in done:
                if seq > done[contract_id]:
                    s.execute(update(MirrorProgress).where(MirrorProgress.mirror_id == mirror.id,
                                                           MirrorProgress.contract_id == contract_id)
                              .values(seq=seq, updated_at=now))
            elif s.get(Contract, contract_id) is not None:
                s.add(MirrorProgress(mirror_id=mirror.id, contract_id=contract_id, seq=seq, updated_at=now))


def lag(s: Session, mirror_id: uuid.UUID) -> dict[str, Any]:
    """`blobs_behind`: media events the mirror has not verified yet; `lag_s`: the age of the oldest of them."""
    cursor = (select(MirrorProgress.contract_id, MirrorProgress.seq)
              .where(MirrorProgress.mirror_id == mirror_id).subquery())
    behind = (select(func.count(), func.min(Change.at))
              .select_from(Change)
              .outerjoin(cursor, cursor.c.contract_id == Change.contract_id)
              .where(Change.kind.in_(BLOB_KINDS), Change.seq > func.coalesce(cursor.c.seq, 0)))
    count, oldest = s.execute(behind).one()
    return {"blobs_behind": int(count), "lag_s": _age(oldest)}


def _age(oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    return round(max(0.0, (utcnow() - oldest).total_seconds()), 3)


def mirrors_figures(ctx: Context) -> list[dict[str, Any]]:
    """Each active mirror's lag, for the cloud's health."""
    out = []
    with ctx.db.read() as s:
        for m in s.scalars(select(Mirror).where(Mirror.revoked_at.is_(None)).order_by(Mirror.created_at)):
            out.append({"id": str(m.id), "name": m.name, "last_seen_at": m.last_seen_at, **lag(s, m.id)})
    return out


def stored_at_every_mirror(s: Session, contract_id: uuid.UUID, seq: int) -> bool:
    """Whether every active mirror has verified the blobs of the contract's events up to `seq`."""
    active = select(Mirror.id).where(Mirror.revoked_at.is_(None)).subquery()
    missing = s.scalar(
        select(func.count()).select_from(active)
        .outerjoin(MirrorProgress, and_(MirrorProgress.mirror_id == active.c.id,
                                        MirrorProgress.contract_id == contract_id))
        .where(func.coalesce(MirrorProgress.seq, 0) < seq))
    return not missing


def health_figures(ctx: Context) -> dict[str, Any]:
    """What a cloud's health shows of the mirror site: its epoch, whether it is fenced, each mirror's lag."""
    epoch = read_epoch(ctx)
    return {"epoch": epoch.epoch, "fenced": epoch.fenced, "primary": epoch.fenced_primary if epoch.fenced else None,
            "deployment_id": str(epoch.deployment_id), "mirrors": mirrors_figures(ctx)}


def media_mirrored(ctx: Context, media_id: uuid.UUID) -> bool | None:
    """Whether a media item's blobs are verified at every active mirror; None when no mirror is registered.

    Its newest feed event is looked for from the contract's newest down (a recording just stored is
    near the top), and compared with each mirror's verified cursor.
    """
    with ctx.db.read() as s:
        if s.scalar(select(Mirror.id).where(Mirror.revoked_at.is_(None)).limit(1)) is None:
            return None
        media = s.get(Media, media_id)
        if media is None:
            return None
        seq = s.scalar(select(Change.seq).where(Change.contract_id == media.contract_id, Change.entity_id == media_id,
                                                Change.kind.in_(BLOB_KINDS)).order_by(Change.seq.desc()).limit(1))
        if seq is None:
            return True  # made before the feed existed: not in any mirror's cursor (feed backfill first)
        return stored_at_every_mirror(s, media.contract_id, seq)
