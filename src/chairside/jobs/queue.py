"""A jobs table (an outbox) that any number of workers, in any number of processes, share.

A job is inserted in the same transaction as the change that calls for it (a notice
row and its e-mail job commit together or not at all). A worker *claims* due jobs by
taking a lease: one short transaction that selects them with `FOR UPDATE SKIP LOCKED`
on PostgreSQL (on SQLite the `BEGIN IMMEDIATE` transactions run one at a time, which
serializes claims just as well) and stamps them with a lease token and an expiry. The
work runs outside any transaction; the job is then marked done, or failed and
scheduled again with a doubling delay, each only if the lease is still the worker's.
A worker that dies simply lets its lease run out, and another one takes the job over.

Delivery is at least once: a worker that does the work and dies before it marks the
job done leaves it to be done again. Handlers make that harmless (an e-mail carries a
Message-ID that is the same on every try, so mail clients show one message).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from chairside.db.engine import Database, rowcount
from chairside.db.models import Job, utcnow

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = timedelta(hours=6)


@dataclass(frozen=True)
class Claimed:
    """A job this worker holds a lease on."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int  # this try included
    lease_token: str


#: A handler does the job's work; it may return a short note kept with the finished job.
Handler = Callable[[Claimed], str | None]


@dataclass(frozen=True)
class Policy:
    lease_s: float = 300
    retry_base_s: float = 30
    max_attempts: int = 12


def enqueue(
    s: Session, kind: str, payload: dict[str, Any], *, key: str | None = None, run_after: datetime | None = None
) -> Job:
    """Add a job in the caller's transaction. `key`, when given, is unique: a second job with it fails."""
    job = Job(kind=kind, key=key, payload=payload, run_after=run_after or utcnow(), attempts=0)
    s.add(job)
    s.flush()
    return job


def claim(db: Database, kinds: Sequence[str], *, lease_s: float, limit: int = 10,
          now: datetime | None = None) -> list[Claimed]:
    """Take a lease on up to `limit` due jobs of these kinds that nobody else holds."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    with db.session() as s:
        ids = list(s.scalars(
            select(Job.id)
            .where(
                Job.kind.in_(kinds), Job.done_at.is_(None), Job.dead_at.is_(None), Job.run_after <= now,
                or_(Job.lease_until.is_(None), Job.lease_until <= now),
            )
            .order_by(Job.run_after, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ))
        if not ids:
            return []
        s.execute(
            update(Job).where(Job.id.in_(ids))
            .values(lease_token=token, lease_until=now + timedelta(seconds=lease_s), attempts=Job.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        rows = s.execute(select(Job.id, Job.kind, Job.payload, Job.attempts).where(Job.id.in_(ids)).order_by(Job.id))
        return [Claimed(r.id, r.kind, dict(r.payload), r.attempts, token) for r in rows]


def succeed(db: Database, job: Claimed, result: str | None = None, *, now: datetime | None = None) -> bool:
    """Mark the job done; False when the lease had been lost to another worker meanwhile."""
    with db.session() as s:
        done = s.execute(
            update(Job).where(Job.id == job.id, Job.lease_token == job.lease_token)
            .values(done_at=now or utcnow(), lease_token=None, lease_until=None, result=(result or "")[:200] or None)
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(done) == 1)


def retry_delay(attempts: int, base_s: float) -> timedelta:
    """30 s, 1 min, 2 min, ... doubling after each failed try, at most 6 hours."""
    seconds = base_s * (2 ** min(max(attempts - 1, 0), 30))
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def fail(db: Database, job: Claimed, error: str, policy: Policy, *, now: datetime | None = None) -> bool:
    """Schedule another try later, or give the job up after the last attempt. False when the lease was lost."""
    now = now or utcnow()
    values: dict[str, Any] = {"lease_token": None, "lease_until": None, "last_error": error[:1000]}
    if job.attempts >= policy.max_attempts:
        values["dead_at"] = now
    else:
        values["run_after"] = now + retry_delay(job.attempts, policy.retry_base_s)
    with db.session() as s:
        result = s.execute(
            update(Job).where(Job.id == job.id, Job.lease_token == job.lease_token).values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(result) == 1)


def run_due(db: Database, handlers: Mapping[str, Handler], policy: Policy, *, limit: int = 10) -> int:
    """Claim due jobs of the handled kinds and run them; answer how many were run (done or failed)."""
    claimed = claim(db, list(handlers), lease_s=policy.lease_s, limit=limit)
    for job in claimed:
        try:
            note = handlers[job.kind](job)
        except Exception as e:  # any failure is retried later; the job keeps the reason
            log.warning("job %s (%s) failed on try %s: %s", job.id, job.kind, job.attempts, e)
            fail(db, job, f"{type(e).__name__}: {e}", policy)
        else:
            if not succeed(db, job, note):
                log.warning("job %s (%s) finished after its lease ran out", job.id, job.kind)
    return len(claimed)
