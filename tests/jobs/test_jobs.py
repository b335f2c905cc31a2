"""The jobs table: leases, retries with backoff, and many workers sharing it without running a job twice."""

from __future__ import annotations

import collections
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chairside.context import Context
from chairside.db.models import Job, utcnow
from chairside.jobs import queue

POLICY = queue.Policy(lease_s=60, retry_base_s=30, max_attempts=3)


def _add(ctx: Context, n: int = 1, kind: str = "test") -> list[int]:
    with ctx.db.session() as s:
        return [queue.enqueue(s, kind, {"n": i}).id for i in range(n)]


def _row(ctx: Context, job_id: int) -> Job:
    with ctx.db.session() as s:
        row = s.get(Job, job_id)
        assert row is not None
        return row


def test_a_claimed_job_is_left_alone_until_its_lease_runs_out(ctx: Context) -> None:
    [job_id] = _add(ctx)
    now = utcnow()
    [first] = queue.claim(ctx.db, ["test"], lease_s=60, now=now)
    assert (first.id, first.attempts, first.payload) == (job_id, 1, {"n": 0})
    assert queue.claim(ctx.db, ["test"], lease_s=60, now=now + timedelta(seconds=59)) == []
    [taken_over] = queue.claim(ctx.db, ["test"], lease_s=60, now=now + timedelta(seconds=61))  # the worker died
    assert taken_over.attempts == 2 and taken_over.lease_token != first.lease_token
    assert not queue.succeed(ctx.db, first)  # the first worker's lease is gone: it cannot mark the job
    assert queue.succeed(ctx.db, taken_over, "sent")
    assert _row(ctx, job_id).result == "sent"
    assert queue.claim(ctx.db, ["test"], lease_s=60, now=now + timedelta(days=1)) == []


def test_only_the_asked_kinds_are_claimed(ctx: Context) -> None:
    _add(ctx, kind="other")
    assert queue.claim(ctx.db, ["test"], lease_s=60) == []
    assert len(queue.claim(ctx.db, ["other"], lease_s=60)) == 1


def test_a_failed_job_is_tried_again_later_with_a_doubling_delay_then_given_up(ctx: Context) -> None:
    [job_id] = _add(ctx)
    now = utcnow()
    for attempt, delay in [(1, 30), (2, 60)]:
        [job] = queue.claim(ctx.db, ["test"], lease_s=60, now=now)
        assert job.attempts == attempt
        assert queue.fail(ctx.db, job, "451 try later", POLICY, now=now)
        row = _row(ctx, job_id)
        assert row.run_after == now + timedelta(seconds=delay) and row.last_error == "451 try later"
        assert queue.claim(ctx.db, ["test"], lease_s=60, now=now + timedelta(seconds=delay - 1)) == []
        now += timedelta(seconds=delay)
    [job] = queue.claim(ctx.db, ["test"], lease_s=60, now=now)
    queue.fail(ctx.db, job, "still down", POLICY, now=now)
    row = _row(ctx, job_id)
    assert row.dead_at == now and row.done_at is None and row.attempts == 3
    assert queue.claim(ctx.db, ["test"], lease_s=60, now=now + timedelta(days=30)) == []


def test_the_retry_delay_doubles_up_to_six_hours() -> None:
    assert [queue.retry_delay(a, 30).total_seconds() for a in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert queue.retry_delay(40, 30) == timedelta(hours=6)


def test_a_job_key_is_held_by_one_job_only(ctx: Context) -> None:
    with ctx.db.session() as s:
        queue.enqueue(s, "test", {}, key="notice-mail:1")
    with pytest.raises(IntegrityError), ctx.db.session() as s:
        queue.enqueue(s, "test", {}, key="notice-mail:1")


def test_a_handler_error_is_kept_with_the_job_and_retried(ctx: Context) -> None:
    [job_id] = _add(ctx)

    def broken(job: queue.Claimed) -> None:
        raise ConnectionRefusedError("mail server down")

    assert queue.run_due(ctx.db, {"test": broken}, POLICY) == 1
    row = _row(ctx, job_id)
    assert row.done_at is None and row.attempts == 1 and "mail server down" in (row.last_error or "")


def test_many_workers_share_the_table_and_run_each_job_exactly_once(ctx: Context) -> None:
    ids = set(_add(ctx, 60))
    runs: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def handler(job: queue.Claimed) -> str:
        with lock:
            runs[job.id] += 1
        time.sleep(0.002)
        return "ok"

    def worker() -> None:
        try:
            idle = 0
            while idle < 3:
                idle = idle + 1 if queue.run_due(ctx.db, {"test": handler}, POLICY, limit=4) == 0 else 0
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(runs) == ids and set(runs.values()) == {1}
    with ctx.db.session() as s:
        assert all(j.done_at is not None for j in s.scalars(select(Job)))
