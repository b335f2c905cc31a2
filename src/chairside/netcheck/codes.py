"""Onboarding codes: what opens the cloud's line-check endpoints to one clinic (docs/netcheck.md).

A code is shown once, stored as its SHA-256, expires after `netcheck_code_ttl_s` and allows
`netcheck_code_runs` runs. Starting a run (`start_run`) spends one and opens a window of the run's
minutes plus a margin; the measurement requests of that run are admitted while it lasts (`admit`).
An unknown code is refused with 401, an expired or used-up one with 403, both as problem+json.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.tokens import token_hash
from chairside.context import Context
from chairside.db.models import Contract, NetcheckCode, utcnow
from chairside.errors import Problem

MARGIN = timedelta(minutes=1)  # a run's window: its minutes, plus this for the throughput tests and slack
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read out over the phone at the hearing

BAD_CODE = ("この回線チェックのコードは正しくありません。担当者から受け取ったコードをもう一度確かめて入力してください。"
            " / This line-check code is not right. Check the code you were given and type it again.")
EXPIRED = ("この回線チェックのコードは有効期限が切れています。担当者に新しいコードを依頼してください。"
           " / This line-check code has expired. Ask your Chairside contact for a new one.")
USED_UP = ("この回線チェックのコードは使用回数の上限に達しました。担当者に新しいコードを依頼してください。"
           " / This line-check code has been used as many times as it allows. Ask your Chairside contact for a "
           "new one.")
NOT_STARTED = ("回線チェックの実行時間が終わりました。もう一度チェックを始めてください。"
               " / This line-check run has ended. Start the check again.")


@dataclass(frozen=True)
class Run:
    """One started run: until when its measurement requests are admitted, and how many runs the code has left."""

    contract_id: uuid.UUID
    until: datetime
    runs_left: int


def normalize(code: str) -> str:
    return code.replace("-", "").replace(" ", "").strip().upper()


def new_code(ctx: Context, contract_id: uuid.UUID, *, now: datetime | None = None) -> tuple[str, datetime]:
    """A new code for a contract (shown once): e.g. `K7QX-M2PA-9TRD`; answers it and when it expires."""
    now = now or utcnow()
    code = "-".join("".join(secrets.choice(_ALPHABET) for _ in range(4)) for _ in range(3))  # 60 bits
    expires = now + timedelta(seconds=ctx.settings.netcheck_code_ttl_s)
    with ctx.db.session() as s:
        if s.get(Contract, contract_id) is None:
            raise LookupError(f"no contract {contract_id}")
        s.add(NetcheckCode(contract_id=contract_id, code_hash=token_hash(normalize(code)), created_at=now,
                           expires_at=expires))
    return code, expires


def _refuse_unless_valid(row: NetcheckCode | None, now: datetime) -> NetcheckCode:
    if row is None:
        raise Problem(401, BAD_CODE, code="bad-netcheck-code")
    if row.expires_at <= now:
        raise Problem(403, EXPIRED, code="netcheck-code-expired")
    return row


def start_run(ctx: Context, code: str, minutes: float, *, now: datetime | None = None) -> Run:
    """Spend one run of the code and open its window; refuses a bad, expired or used-up code."""
    now = now or utcnow()
    limit = ctx.settings.netcheck_max_minutes
    if not 0 < minutes <= limit:
        raise Problem(422, f"回線チェックの時間は 0 分より長く {limit:g} 分以内で指定してください。"
                      f" / The check's length must be more than 0 and at most {limit:g} minutes.",
                      code="bad-netcheck-minutes")
    with ctx.db.session() as s:
        row = _refuse_unless_valid(
            s.scalar(select(NetcheckCode).where(NetcheckCode.code_hash == token_hash(normalize(code)))
                     .with_for_update()), now)
        if row.runs >= ctx.settings.netcheck_code_runs:
            raise Problem(403, USED_UP, code="netcheck-code-used")
        row.runs += 1
        row.run_until = min(now + timedelta(minutes=minutes) + MARGIN, row.expires_at)
        run = Run(row.contract_id, row.run_until, ctx.settings.netcheck_code_runs - row.runs)
        audit.add(s, None, "netcheck.run", contract_id=row.contract_id,
                  detail={"code_id": str(row.id), "run": row.runs, "minutes": minutes})
    _cache.put(normalize(code), run.until)
    return run


class _Admitted:
    """The windows of runs this process admitted lately, so a ping costs no database read (per code hash)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, datetime] = {}

    def put(self, code: str, until: datetime) -> None:
        with self._lock:
            if len(self._until) > 1000:
                self._until.clear()
            self._until[token_hash(code)] = until

    def get(self, code: str, now: datetime) -> bool:
        with self._lock:
            until = self._until.get(token_hash(code))
        return until is not None and now < until


_cache = _Admitted()


def admitted_cached(code: str, now: datetime | None = None) -> bool:
    """True when this process knows the code's run is open (no I/O); False means: ask `admit`."""
    return _cache.get(normalize(code), now or utcnow())


def admit(ctx: Context, code: str, *, now: datetime | None = None) -> None:
    """Admit a measurement request of a started run, or refuse it (401 unknown, 403 expired or no open run)."""
    now = now or utcnow()
    if _cache.get(normalize(code), now):
        return
    with ctx.db.read() as s:
        row = _refuse_unless_valid(
            s.scalar(select(NetcheckCode).where(NetcheckCode.code_hash == token_hash(normalize(code)))), now)
        until = row.run_until
    if until is None or until <= now:
        raise Problem(403, NOT_STARTED, code="netcheck-run-ended")
    _cache.put(normalize(code), until)
