"""The relay's feed follower: keep the local replica current from the cloud's changes feed.

`run(ctx)` long-polls `GET {upstream}/api/v1/feed?after=<cursor>` forever. Each page is
applied in ONE write transaction together with the new cursor (relay_state "feed"), so a
crash or a cut at any moment either applied a page and moved past it, or did neither:
events are applied once, in order, and a restart resumes where it stopped.

How each kind is applied:

- contract, clinic, station, account: the row as the cloud has it (stations with their token hash, so
  the clinic's stations sign in at the relay while the internet is down; accounts with their password
  hash, so the viewer signs in here too: relay/viewer.py). The contract's
  `stored_video_ms` is the cloud's figure plus the videos recorded here that the cloud has not
  confirmed yet, so the quota check at the relay counts both.
- patient: last writer wins per field, by the fields' hybrid logical clocks (`field_clocks`):
  an edit made here and not yet sent, with a newer clock, is kept. A cloud patient whose chart
  number collides with a local patient of another id flags the local one (`merge_with`), the
  way the cloud will flag it when the relay's operation arrives. Search terms are rebuilt.
- media: the row as the cloud has it (a trash or restore made here and not yet sent wins);
  the cloud having it confirms the blob, so its pin in the cache is lifted.
- media.purged: the row goes; its blobs go too unless another row uses them or they are pinned.
- media.teeth, note: an item's tooth numbers, an item's or a patient's note (relay/dentistry.py).

One bad event is logged and skipped (in its own savepoint), never allowed to stop the feed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from chairside.context import Context
from chairside.db.models import (
    Account,
    CachedBlob,
    Clinic,
    Contract,
    Media,
    MediaDerivative,
    OutboxOp,
    Patient,
    RelayState,
    Station,
    utcnow,
)
from chairside.domain.hlc import Clock, is_valid, newer
from chairside.feed.rows import from_json, upsert
from chairside.patients.search import index_patient
from chairside.relay import cache, dentistry, viewer
from chairside.relay.prefetch import Prefetcher, Wanted
from chairside.relay.runtime import FollowerStatus, runtime_of
from chairside.relay.upstream import Upstream

log = logging.getLogger(__name__)

STATE_KEY = "feed"
PAGE_LIMIT = 500
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 30.0
# Patient fields written by people, ordered per field by their clocks. Other columns follow the cloud.
LWW_FIELDS = frozenset({"chart_no", "name", "name_kana", "birth_date", "sex"})


class FeedError(Exception):
    """The cloud answered the feed request, but not with a page."""


@dataclass
class Applied:
    """What a page did, for the prefetcher, the blob clean-up and the tests."""

    events: int = 0
    skipped: int = 0
    media: list[Wanted] = field(default_factory=list)
    purged_blobs: set[str] = field(default_factory=set)


# --- the cursor -----------------------------------------------------------------------------

def state(ctx: Context) -> dict[str, Any]:
    with ctx.db.read() as s:
        row = s.get(RelayState, STATE_KEY)
        return dict(row.value) if row is not None else {}


def cursor(ctx: Context) -> int:
    return int(state(ctx).get("cursor", 0))


def status(ctx: Context) -> dict[str, Any]:
    """For the relay's status endpoint: where the replica is in the cloud's feed."""
    st = state(ctx)
    run = ctx.relay.follower if ctx.relay is not None else FollowerStatus()
    cur, head = int(st.get("cursor", 0)), int(st.get("head", 0))
    return {
        "cursor": cur,
        "head": head,
        "behind": max(0, head - cur),
        "applied_at": st.get("applied_at"),
        "last_error": run.last_error,
        "skipped_events": int(st.get("skipped", 0)),
    }


# --- applying a page ------------------------------------------------------------------------

def apply_page(ctx: Context, page: dict[str, Any], *, expect_after: int | None = None) -> Applied:
    """Apply one feed page and store its cursor, in one write transaction."""
    applied = Applied()
    items = page["items"]
    with ctx.db.session() as s:
        row = s.get(RelayState, STATE_KEY)
        current = dict(row.value) if row is not None else {}
        if expect_after is not None and int(current.get("cursor", 0)) != expect_after:
            # Another follower (a second process on the same database) moved on meanwhile: drop this page.
            log.warning("feed cursor moved from %s to %s meanwhile; page dropped", expect_after, current.get("cursor"))
            return applied
        clock = ctx.clock.get(s)
        for event in items:
            try:
                with s.begin_nested():
                    _apply_event(ctx, s, clock, event, applied)
                    s.flush()
                applied.events += 1
            except Exception:
                applied.skipped += 1
                log.exception("feed event %s (%s %s) could not be applied; skipped",
                              event.get("seq"), event.get("kind"), event.get("id"))
        value = {
            "cursor": int(page["next"]),
            "head": int(page.get("head", page["next"])),
            "applied_at": utcnow().isoformat() if items else current.get("applied_at"),
            "skipped": int(current.get("skipped", 0)) + applied.skipped,
        }
        if row is None:
            s.add(RelayState(key=STATE_KEY, value=value))
        elif value != current:
            row.value = value
    if applied.purged_blobs:
        _collect_blobs(ctx, applied.purged_blobs)
    return applied


def _apply_event(ctx: Context, s: Session, clock: Clock, event: dict[str, Any], applied: Applied) -> None:
    kind, body = event["kind"], event["body"]
    if kind == "contract":
        _apply_contract(s, body)
    elif kind == "clinic":
        upsert(s, Clinic, body)
    elif kind == "station":
        upsert(s, Station, body)
    elif kind == "account":
        upsert(s, Account, body)  # with its password hash: the viewer signs in here offline (relay/viewer.py)
    elif kind == "session":
        viewer.session_event(s, body)  # the account's latest sign-in elsewhere: older sessions here end
    elif kind in ("media.teeth", "note"):
        dentistry.feed_event(s, kind, body)  # tooth numbers and notes written elsewhere (relay/dentistry.py)
    elif kind in ("annotation", "annotation.deleted", "media.tags"):
        viewer.drawing_or_tags_event(s, kind, body)  # the viewer's writes made elsewhere (relay/viewer.py)
    elif kind == "patient":
        _apply_patient(s, clock, body)
    elif kind == "media":
        _apply_media(ctx, s, body, applied)
    elif kind == "media.purged":
        _apply_purge(s, body, applied)
    elif kind == "patient.merged":
        viewer.patient_merged(s, body)  # merged into another patient at the cloud (patients/merge.py)
    else:
        log.info("feed event kind %r is not known to this relay version; ignored", kind)


def _pending_upload_ms(s: Session) -> int:
    """Durations of videos recorded here whose upload the cloud has not confirmed yet."""
    bodies = s.scalars(select(OutboxOp.body).where(OutboxOp.kind == "media.upload", OutboxOp.done_at.is_(None),
                                                   OutboxOp.failed_at.is_(None)))
    return sum(int(b.get("duration_ms") or 0) for b in bodies if isinstance(b, dict))


def _apply_contract(s: Session, body: dict[str, Any]) -> None:
    body = {k: v for k, v in body.items() if k != "feed_seq"}
    body["stored_video_ms"] = int(body.get("stored_video_ms") or 0) + _pending_upload_ms(s)
    upsert(s, Contract, body)


def _flag_collision(s: Session, patient_id: uuid.UUID, clinic_id: uuid.UUID, chart_no: str) -> None:
    """A local unflagged patient with the same chart number at the clinic is flagged for a merge with this one."""
    other = s.scalar(select(Patient).where(Patient.clinic_id == clinic_id, Patient.chart_no == chart_no,
                                           Patient.merge_with.is_(None), Patient.id != patient_id))
    if other is not None:
        log.warning("patient %s (chart %s) collides with local patient %s: flagged for a merge",
                    patient_id, chart_no, other.id)
        other.merge_with = patient_id
        s.flush()


def _apply_patient(s: Session, clock: Clock, body: dict[str, Any]) -> None:
    values = from_json(Patient, body)
    theirs: dict[str, Any] = dict(values.get("field_clocks") or {})
    for ts in theirs.values():
        if is_valid(ts):
            clock.observe(ts)
    row = s.get(Patient, values["id"])
    if row is None:
        if values.get("merge_with") is None:
            _flag_collision(s, values["id"], values["clinic_id"], values["chart_no"])
        row = Patient(**values)
        s.add(row)
    else:
        mine: dict[str, Any] = dict(row.field_clocks or {})
        merged = dict(mine)
        final: dict[str, Any] = {}
        for name, value in values.items():
            if name in ("id", "field_clocks"):
                continue
            if name in LWW_FIELDS or name in theirs or name in mine:
                if newer(mine.get(name), theirs.get(name)):
                    continue  # an edit made here, newer than the cloud's: kept (it is on its way up)
                if theirs.get(name) is not None:
                    merged[name] = theirs[name]
            final[name] = value
        if "updated_at" in final and final["updated_at"] is not None and row.updated_at is not None:
            final["updated_at"] = max(final["updated_at"], row.updated_at)
        clinic_id = final.get("clinic_id", row.clinic_id)
        chart_no = final.get("chart_no", row.chart_no)
        if final.get("merge_with", row.merge_with) is None and (
                clinic_id != row.clinic_id or chart_no != row.chart_no or row.merge_with is not None):
            _flag_collision(s, row.id, clinic_id, chart_no)
        for name, value in final.items():
            setattr(row, name, value)
        row.field_clocks = merged or None
    s.flush()
    index_patient(s, row)


def _pending_trash(s: Session, media_id: uuid.UUID) -> bool:
    return s.scalar(select(OutboxOp.id).where(
        OutboxOp.entity_id == media_id, OutboxOp.kind.in_(("media.trash", "media.restore")),
        OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None)).limit(1)) is not None


def _pending_upload(s: Session, media_id: uuid.UUID) -> bool:
    return s.scalar(select(OutboxOp.id).where(
        OutboxOp.entity_id == media_id, OutboxOp.kind == "media.upload",
        OutboxOp.done_at.is_(None), OutboxOp.failed_at.is_(None)).limit(1)) is not None


def _apply_media(ctx: Context, s: Session, body: dict[str, Any], applied: Applied) -> None:
    values = from_json(Media, body)
    if s.get(Patient, values["patient_id"]) is None or s.get(Clinic, values["clinic_id"]) is None:
        # The feed sends a patient before its media; this is an item this relay may not see.
        log.warning("media %s: its patient %s is not known here; skipped", values["id"], values["patient_id"])
        return
    if values.get("station_id") is not None and s.get(Station, values["station_id"]) is None:
        values["station_id"] = None  # a station of a branch this relay does not replicate
    row = s.get(Media, values["id"])
    if row is None:
        row = Media(**values)
        s.add(row)
    else:
        if _pending_trash(s, row.id):
            values.pop("deleted_at", None)  # a trash or restore made here, not yet sent, is newer
        if viewer.move_pending(s, row.id):
            values.pop("patient_id", None)  # a move made here, not yet answered, is newer (media/move.py)
        if (row.thumb_sha256 and values.get("thumb_sha256") != row.thumb_sha256
                and ctx.blobs.stat(row.thumb_sha256) is not None):
            values.pop("thumb_sha256", None)  # keep the preview made here rather than fetch another one
        for name, value in values.items():
            setattr(row, name, value)
    # The cloud has the item, so it has its bytes: a blob recorded here may now be evicted like any other,
    # unless its upload is still pending (with a mirror site: until it is verified there too; relay/sender.py).
    if not _pending_upload(s, row.id):
        s.execute(update(CachedBlob).where(CachedBlob.sha256 == row.sha256, CachedBlob.pinned.is_(True))
                  .values(pinned=False))
    if row.deleted_at is None:
        applied.media.append(Wanted(row.id, row.sha256, row.size, row.thumb_sha256))


def _apply_purge(s: Session, body: dict[str, Any], applied: Applied) -> None:
    media_id = uuid.UUID(str(body["id"]))
    row = s.get(Media, media_id)
    hashes = {h for h in (str(body.get("sha256") or ""),) if h}
    if row is not None:
        hashes |= {h for h in (row.sha256, row.thumb_sha256) if h}
        hashes |= set(s.scalars(select(MediaDerivative.sha256).where(MediaDerivative.media_id == media_id)))
        s.delete(row)
    applied.purged_blobs |= hashes


def _collect_blobs(ctx: Context, hashes: set[str]) -> None:
    """Delete the blobs of purged items that nothing else here uses and that are not pinned."""
    for sha in sorted(hashes):
        with ctx.db.session() as s:
            used = s.scalar(select(Media.id).where(or_(Media.sha256 == sha, Media.thumb_sha256 == sha)).limit(1))
            derived = s.scalar(select(MediaDerivative.media_id).where(MediaDerivative.sha256 == sha).limit(1))
            cached = s.get(CachedBlob, sha)
            if used is not None or derived is not None or (cached is not None and cached.pinned):
                continue
            if cached is not None:
                s.delete(cached)
        try:
            ctx.blobs.delete(sha)
        except ValueError:
            log.warning("purged item named a malformed blob key %r; nothing deleted", sha[:80])


# --- following ------------------------------------------------------------------------------

async def fetch_page(ctx: Context, client: httpx.AsyncClient, after: int, *, limit: int = PAGE_LIMIT,
                     wait: float = 0.0) -> dict[str, Any]:
    up = _upstream(ctx)
    try:
        r = await client.get("/api/v1/feed", params={"after": after, "limit": limit, "wait": round(wait)})
    except httpx.TransportError as e:
        up.unreachable(e)
        raise
    up.contact()
    if r.status_code != 200:
        detail = r.text[:300]
        raise FeedError(f"the cloud answered the feed request with {r.status_code}: {detail}")
    page = r.json()
    if not isinstance(page, dict) or not isinstance(page.get("items"), list) or "next" not in page:
        raise FeedError("the cloud's feed answer is not a page")
    return page


def _upstream(ctx: Context) -> Upstream:
    return runtime_of(ctx).upstream


async def sync_once(ctx: Context, client: httpx.AsyncClient, *, limit: int = PAGE_LIMIT, wait: float = 0.0,
                    prefetcher: Prefetcher | None = None) -> dict[str, Any]:
    """Fetch and apply one page; answers the page (for its `more` and `head`)."""
    after = await anyio.to_thread.run_sync(cursor, ctx)
    page = await fetch_page(ctx, client, after, limit=limit, wait=wait)
    applied = await anyio.to_thread.run_sync(lambda: apply_page(ctx, page, expect_after=after))
    if prefetcher is not None and applied.media:
        prefetcher.offer(applied.media)
    return page


async def catch_up(ctx: Context, *, limit: int = PAGE_LIMIT) -> int:
    """Apply pages until the feed has no more (no waiting); answers the cursor reached."""
    client = _upstream(ctx).async_client(timeout=60.0)
    try:
        while True:
            page = await sync_once(ctx, client, limit=limit)
            if not page.get("more"):
                return int(page["next"])
    finally:
        await client.aclose()


async def run(ctx: Context, *, limit: int = PAGE_LIMIT) -> None:
    """Follow the cloud's feed forever: long polls, one transaction per page, backoff 1 s → 30 s on errors."""
    up = _upstream(ctx)
    wait = max(0.0, min(60.0, ctx.settings.relay_feed_wait_s))
    client = up.async_client(timeout=30.0, read_timeout=wait + 15.0)  # a silent stall ends, never hangs
    prefetcher = Prefetcher(ctx)
    runtime = runtime_of(ctx)
    runtime.prefetcher = prefetcher
    status = runtime.follower
    backoff = BACKOFF_MIN_S
    more = True
    try:
        while True:
            started = time.monotonic()
            try:
                page = await sync_once(ctx, client, limit=limit, wait=0.0 if more else wait, prefetcher=prefetcher)
                more = bool(page.get("more"))
                backoff = BACKOFF_MIN_S
                status.last_error = None
                if not page["items"] and time.monotonic() - started < 0.5:
                    await asyncio.sleep(0.5)  # a cloud that does not hold long polls must not be hammered
            except asyncio.CancelledError:
                raise
            except Exception as e:
                status.last_error = str(e)[:300] or repr(e)
                status.errors += 1
                if isinstance(e, (httpx.TransportError, FeedError)):
                    log.warning("feed: %s; trying again in %.0f s", e, backoff)
                else:
                    log.exception("feed follower error; trying again in %.0f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                more = True
    finally:
        await prefetcher.close()
        await client.aclose()
        await cache.close_clients(ctx)
