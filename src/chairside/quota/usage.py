"""Video quota: the stored-hours counter, the over-limit rules, notices and the forecast.

The contract's `stored_video_ms` is the one figure every check reads. It changes only
through `_add`, an atomic `UPDATE contracts SET stored_video_ms = stored_video_ms + :d`
run in the same transaction that inserts or purges the video's row, so it is exact
whatever runs at once: the UPDATE holds the contract's row lock (PostgreSQL) or the
database's write lock (SQLite, BEGIN IMMEDIATE) until that transaction ends, which also
makes the before/after figures it returns exact. Nothing on a request path sums the
media table; `chairside admin quota verify` recounts offline and reports any drift.

Videos in the trash still count; they free their hours when purged. Photos never count.
Rules and reasons: docs/quota.md.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from chairside.db.engine import Database
from chairside.db.models import Contract, Media, Notice, QuotaDaily, utcnow
from chairside.domain.calendar import japan_day
from chairside.domain.plans import PLAN_STEP_HOURS
from chairside.errors import Problem
from chairside.feed import changes
from chairside.jobs import queue
from chairside.settings import SETTINGS

MS_PER_HOUR = 3_600_000
NOTICE_MAIL = "notice-mail"  # the job kind that e-mails a notice (chairside.quota.notify)

#: The notice thresholds when the caller has no Settings at hand (the declared default).
DEFAULT_NOTICE_PERCENTS: tuple[int, ...] = next(
    s.cast(s.default) for s in SETTINGS if s.name == "quota_notice_percents"
)

#: File name endings and metadata types that announce a video when an upload is created.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".qt", ".avi", ".mts", ".m2ts", ".ts", ".mkv", ".webm",
                            ".wmv", ".3gp", ".mpg", ".mpeg"})


def video_ms(duration_s: float | None) -> int:
    """A video's duration in whole milliseconds, rounded half up (the migration's SQL rounds the same)."""
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return 0
    return int(Decimal(duration_s * 1000).to_integral_value(rounding=ROUND_HALF_UP))


def plan_ms(plan_hours: int) -> int:
    return plan_hours * MS_PER_HOUR



def hours(ms: int) -> Decimal:
    return Decimal(ms) / MS_PER_HOUR


def used_hours(ms: int) -> Decimal:
    """Stored hours shown to 0.01 h, rounded up: 99.999 h never reads as 99.99 (nor as room left)."""
    return hours(ms).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def _hours_text(value: Decimal) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- the counter -------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    before_ms: int
    after_ms: int
    plan_hours: int

    @property
    def was_at_limit(self) -> bool:
        return self.before_ms >= plan_ms(self.plan_hours)


def _add(s: Session, contract_id: uuid.UUID, delta_ms: int) -> Move:
    row = s.execute(
        update(Contract)
        .where(Contract.id == contract_id)
        .values(stored_video_ms=Contract.stored_video_ms + delta_ms)
        .returning(Contract.stored_video_ms, Contract.plan_hours)
        .execution_options(synchronize_session=False)
    ).one()
    return Move(row.stored_video_ms - delta_ms, row.stored_video_ms, row.plan_hours)


def _daily(s: Session, contract_id: uuid.UUID, day: date, *, recorded_ms: int = 0, freed_ms: int = 0) -> None:
    """Add to the day's counters (one upsert, the same SQL shape on both databases)."""
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(QuotaDaily).values(contract_id=contract_id, day=day, recorded_ms=recorded_ms, freed_ms=freed_ms)
    stmt = stmt.on_conflict_do_update(
        index_elements=[QuotaDaily.contract_id, QuotaDaily.day],
        set_={"recorded_ms": QuotaDaily.recorded_ms + stmt.excluded.recorded_ms,
              "freed_ms": QuotaDaily.freed_ms + stmt.excluded.freed_ms},
    )
    s.execute(stmt)


def count_video(
    s: Session,
    item: Media,
    *,
    created_over_limit: bool = False,
    percents: Sequence[int] = DEFAULT_NOTICE_PERCENTS,
    now: datetime | None = None,
) -> Move:
    """A video row was just added in `s`: count it, in the same transaction.

    An upload created while the contract was at or over its limit is refused here
    (403, rolling the row back) if the contract is still at or over it; an upload
    created below the limit is always counted in full, however far it goes over.
    """
    now = now or utcnow()
    ms = video_ms(item.duration_s)
    move = _add(s, item.contract_id, ms)
    if created_over_limit and move.was_at_limit:
        raise limit_problem(move.before_ms, move.plan_hours)
    if item.source != "migration":  # moving old recordings in is not the recording rate
        _daily(s, item.contract_id, japan_day(now), recorded_ms=ms)
    record_crossings(s, item.contract_id, move.before_ms, move.plan_hours, move.after_ms, move.plan_hours,
                     percents, now=now)
    changes.contract_changed(s, item.contract_id)  # followers see the stored hours move
    return move


def uncount_video(s: Session, item: Media, *, now: datetime | None = None) -> Move:
    """A video row was just purged in `s`: free its hours, in the same transaction."""
    ms = video_ms(item.duration_s)
    move = _add(s, item.contract_id, -ms)
    _daily(s, item.contract_id, japan_day(now or utcnow()), freed_ms=ms)
    changes.contract_changed(s, item.contract_id)
    return move


# --- notices -------------------------------------------------------------------------------


def crossed(before_ms: int, before_plan: int, after_ms: int, after_plan: int, percents: Sequence[int]) -> list[int]:
    """The thresholds crossed upward: below p % of the plan before, at or above it after."""
    return [
        p for p in percents
        if before_ms * 100 < p * plan_ms(before_plan) and after_ms * 100 >= p * plan_ms(after_plan)
    ]


def record_crossings(
    s: Session, contract_id: uuid.UUID, before_ms: int, before_plan: int, after_ms: int, after_plan: int,
    percents: Sequence[int], *, now: datetime | None = None,
) -> list[Notice]:
    """Insert one notice (and its e-mail job) per threshold crossed upward.

    The caller holds the contract's row lock (it just updated the row), so crossings of
    one contract are recorded one transaction at a time and the crossing number is the
    next one; the unique (contract, threshold, crossing) makes a second insert fail
    rather than send a second notice.
    """
    notices = []
    for p in crossed(before_ms, before_plan, after_ms, after_plan, percents):
        last = s.scalar(
            select(func.max(Notice.crossing)).where(Notice.contract_id == contract_id, Notice.threshold_percent == p)
        )
        notice = Notice(
            id=uuid.uuid4(), contract_id=contract_id, kind="quota", threshold_percent=p, crossing=(last or 0) + 1,
            used_ms=after_ms, plan_hours=after_plan, created_at=now or utcnow(),
        )
        s.add(notice)
        s.flush()
        queue.enqueue(s, NOTICE_MAIL, {"notice_id": str(notice.id)}, key=f"{NOTICE_MAIL}:{notice.id}")
        notices.append(notice)
    return notices


def notice_text(notice: Notice, contract_name: str) -> tuple[str, str]:
    """(title, message) in English; the e-mail adds the Japanese (chairside.quota.notify)."""
    used = _hours_text(used_hours(notice.used_ms))
    p = notice.threshold_percent
    title = f"Stored video reached {p}% of the {notice.plan_hours}-hour plan"
    message = (
        f"{contract_name}: {used} of the {notice.plan_hours} video hours in the plan are used ({p}% or more). "
    )
    if p >= 100:
        message += ("New videos are refused until there is room again; recordings already uploading are saved "
                    "in full, and photos are always accepted. ")
    message += (
        f"To make room, the contract's administrator can ask for {PLAN_STEP_HOURS} more hours, or videos can be "
        "exported and deleted (videos in the trash count until the trash is emptied)."
    )
    return title, message


# --- limits --------------------------------------------------------------------------------


def declares_video(meta: Mapping[str, str]) -> bool:
    """Whether an upload's metadata announces a video: `filetype` video/*, or a video file name."""
    filetype = meta.get("filetype", "").strip().lower()
    if filetype.startswith("video/"):
        return True
    name = meta.get("filename", "") or meta.get("name", "")
    return PurePosixPath(name.lower()).suffix in VIDEO_SUFFIXES


def limit_problem(used_ms: int, plan_hours: int, headers: dict[str, str] | None = None) -> Problem:
    used = used_hours(used_ms)
    return Problem(
        403,
        f"New videos cannot be saved: {_hours_text(used)} of the {plan_hours} video hours in this contract's plan "
        "are used. Photos can still be saved. To record videos again, either (1) ask for a larger plan (the "
        "contract's administrator can ask for 100 more hours at a time), or (2) export the videos you no longer "
        "need and delete them, then empty the trash (videos in the trash count until they are purged).",
        title="Video hours used up",
        code="video-quota-full",
        headers=headers,
        used_hours=float(used),
        plan_hours=plan_hours,
        ways_out=["larger-plan", "export-and-delete-videos"],
    )


def check_new_upload(
    s: Session, contract_id: uuid.UUID, meta: Mapping[str, str], *, replay: bool = False,
    headers: dict[str, str] | None = None,
) -> bool:
    """At upload creation: refuse (403) a new video when the contract is at or over its limit.

    Answers whether the contract is at or over the limit now, to be kept on the upload so
    the completion can refuse a video that was announced under a photo's name. `replay`:
    the media id is already stored (a retry), which adds nothing and is never refused.
    """
    row = s.execute(select(Contract.stored_video_ms, Contract.plan_hours).where(Contract.id == contract_id)).one()
    at_limit = bool(row.stored_video_ms >= plan_ms(row.plan_hours))
    if at_limit and not replay and declares_video(meta):
        raise limit_problem(row.stored_video_ms, row.plan_hours, headers)
    return at_limit


def still_at_limit(s: Session, contract_id: uuid.UUID) -> tuple[int, int] | None:
    """(used ms, plan hours) when the contract is at or over its limit now, else None (a cheap pre-check)."""
    row = s.execute(select(Contract.stored_video_ms, Contract.plan_hours).where(Contract.id == contract_id)).one()
    return (row.stored_video_ms, row.plan_hours) if row.stored_video_ms >= plan_ms(row.plan_hours) else None


# --- what a station or viewer sees ----------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    plan_hours: int
    used_ms: int
    forecast_full_on: date | None

    @property
    def used_hours(self) -> Decimal:
        return used_hours(self.used_ms)

    @property
    def remaining_hours(self) -> Decimal:
        """Room left, to 0.01 h rounded down; 0 at or over the limit."""
        left = max(0, plan_ms(self.plan_hours) - self.used_ms)
        return hours(left).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)

    @property
    def percent(self) -> Decimal:
        """Percent of the plan used, to 0.1 rounded down, so it reads 80.0 exactly when 80 % is crossed."""
        return (Decimal(self.used_ms * 100) / plan_ms(self.plan_hours)).quantize(Decimal("0.1"), rounding=ROUND_FLOOR)

    def as_json(self) -> dict[str, Any]:
        return {
            "plan_hours": self.plan_hours,
            "used_hours": float(self.used_hours),
            "remaining_hours": float(self.remaining_hours),
            "percent": float(self.percent),
            "forecast_full_on": self.forecast_full_on.isoformat() if self.forecast_full_on else None,
        }


def forecast_full_on(
    s: Session, contract_id: uuid.UUID, used_ms: int, plan_hours: int, *, today: date, window_days: int = 30,
    since: date | None = None,
) -> date | None:
    """The day the plan will be full at the net recording rate of the last `window_days` days.

    The rate is (recorded - purged) over the window, the window starting no earlier than
    `since` (the contract's first day), today included. None when that rate is zero or
    less (not filling up); today when already full.
    """
    if used_ms >= plan_ms(plan_hours):
        return today
    start = today - timedelta(days=max(window_days, 1) - 1)
    if since is not None and since > start:
        start = min(since, today)
    net = s.scalar(
        select(func.coalesce(func.sum(QuotaDaily.recorded_ms - QuotaDaily.freed_ms), 0)).where(
            QuotaDaily.contract_id == contract_id, QuotaDaily.day >= start, QuotaDaily.day <= today
        )
    )
    net = int(net or 0)
    if net <= 0:
        return None
    span = (today - start).days + 1
    remaining = plan_ms(plan_hours) - used_ms
    days = -(-remaining * span // net)  # ceil(remaining / (net / span))
    try:
        return today + timedelta(days=days)
    except OverflowError:
        return None  # so slow that the date is past year 9999


def quota_of(s: Session, contract_id: uuid.UUID, *, now: datetime | None = None, window_days: int = 30) -> Quota:
    contract = s.get(Contract, contract_id)
    if contract is None:
        raise LookupError(f"no contract {contract_id}")
    today = japan_day(now or utcnow())
    forecast = forecast_full_on(
        s, contract_id, contract.stored_video_ms, contract.plan_hours, today=today, window_days=window_days,
        since=japan_day(contract.created_at),
    )
    return Quota(contract.plan_hours, contract.stored_video_ms, forecast)


# --- the operator's recount ---------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    contract_id: uuid.UUID
    name: str
    counter_ms: int
    recount_ms: int

    @property
    def drift_ms(self) -> int:
        return self.counter_ms - self.recount_ms


def _recount(s: Session, contract_id: uuid.UUID) -> int:
    durations = s.scalars(
        select(Media.duration_s).where(Media.contract_id == contract_id, Media.kind == "video")
    )
    return sum(video_ms(d) for d in durations)


def verify(db: Database, *, fix: bool = False) -> tuple[int, list[Drift]]:
    """Recount every contract's stored video from its rows (trash included).

    Answers how many contracts were checked and those whose counter differs. With `fix`,
    each counter is set to its recount. Each contract is recounted in its own transaction
    under its row lock, so an upload committing meanwhile is in both figures or in neither.
    """
    with db.session() as s:
        ids = list(s.scalars(select(Contract.id).order_by(Contract.created_at)))
    drifts = []
    for contract_id in ids:
        with db.session() as s:
            contract = s.execute(select(Contract).where(Contract.id == contract_id).with_for_update()).scalar_one()
            recount = _recount(s, contract_id)
            if recount != contract.stored_video_ms:
                drifts.append(Drift(contract_id, contract.name, contract.stored_video_ms, recount))
                if fix:
                    contract.stored_video_ms = recount
    return len(ids), drifts
