"""Viewer accounts, device sessions (one device at a time), sign-in throttling, station enrollment.

Pure database logic, called by the API routes and the admin CLI. Passwords are argon2id
hashes; session, station and enrollment secrets are random and stored only as SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from chairside.auth.tokens import SESSION_PREFIX, new_token, token_hash
from chairside.context import Context
from chairside.db.models import (
    Account,
    AuditEvent,
    Clinic,
    DeviceSession,
    SignInThrottle,
    utcnow,
)
from chairside.domain.kana import fold
from chairside.errors import Problem
from chairside.feed import changes

log = logging.getLogger(__name__)
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the account is unknown, so both answers take the same time. Made at
    first need, not at import: argon2 costs about a second, which every CLI command paid at start."""
    return _hasher.hash("chairside-timing-equaliser")


def prepare_sign_in() -> None:
    """Make the timing equaliser now (a server calls this as it builds its app), so that even the first
    sign-in with an unknown name takes as long as one with a known name."""
    _dummy_hash()


# Each argon2 hash takes 64 MiB for its moment: a burst of sign-ins (a clinic opening) would add 64 MiB per
# worker thread at once (bench/load.py saw 850 MB); two at a time per process keeps memory flat.
_HASHING = threading.BoundedSemaphore(2)


def csrf_for(session_token: str) -> str:
    """The value a cookie-authenticated request must echo in X-CSRF-Token (derived, never stored)."""
    return hashlib.sha256(b"csrf:" + session_token.encode()).hexdigest()[:32]


def hash_password(password: str) -> str:
    with _HASHING:
        return _hasher.hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    try:
        with _HASHING:
            return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def validate_password(password: str) -> None:
    if len(password) < 10:
        raise Problem(422, "The password must have at least 10 characters.", code="weak-password")


def parse_scope(s: Session, contract_id: uuid.UUID, clinic_ids: list[uuid.UUID] | None) -> list[str] | None:
    """Check that every clinic named belongs to the contract (422 otherwise); None means all."""
    if clinic_ids is None:
        return None
    wanted = set(clinic_ids)
    found = set(s.scalars(select(Clinic.id).where(Clinic.contract_id == contract_id, Clinic.id.in_(wanted))))
    if found != wanted or not wanted:
        raise Problem(422, "Choose one or more of this contract's clinics (or all clinics).", code="bad-scope")
    return sorted(str(c) for c in wanted)


def create_account(
    ctx: Context, contract_id: uuid.UUID, login: str, password: str, *,
    is_admin: bool = False, clinic_ids: list[uuid.UUID] | None = None,
) -> Account:
    login = login.strip()
    if not login or len(login) > 100 or any(c.isspace() for c in login):
        raise Problem(422, "A login is one word of up to 100 characters, without spaces.", code="bad-login")
    validate_password(password)
    with ctx.db.session() as s:
        if s.scalar(select(Account.id).where(Account.login == login)) is not None:
            raise Problem(409, f"The login '{login}' is taken. Choose another.", code="login-taken")
        account = Account(contract_id=contract_id, login=login, password_hash=hash_password(password),
                          is_admin=is_admin, clinic_scope=parse_scope(s, contract_id, clinic_ids))
        s.add(account)
        changes.account_changed(s, account)  # relays sign it in offline (docs/relay.md)
    return account


# -- throttling ---------------------------------------------------------------------------------

def _wait_text(seconds: int) -> str:
    return f"{math.ceil(seconds / 60)} minutes" if seconds >= 90 else f"{seconds} seconds"


def _check_throttle(s: Session, keys: list[str], now: datetime) -> None:
    rows = s.scalars(select(SignInThrottle).where(SignInThrottle.key.in_(keys))).all()
    waits = [int((r.blocked_until - now).total_seconds()) + 1
             for r in rows if r.blocked_until and r.blocked_until > now]
    if waits:
        wait = max(waits)
        raise Problem(429, f"Too many wrong passwords. Wait {_wait_text(wait)} and try again.",
                      code="signin-throttled", headers={"Retry-After": str(wait)}, retry_after_s=wait)


def _record_failure(ctx: Context, keys: dict[str, int], now: datetime) -> None:
    """Count a failure for each key; past its free allowance a key must wait 30 s, doubling, up to the cap."""
    cap = ctx.settings.signin_max_wait_s
    with ctx.db.session() as s:
        for key, free in keys.items():
            row = s.get(SignInThrottle, key)
            if row is None or row.first_failure_at < now - timedelta(hours=1):
                if row is not None:
                    s.delete(row)
                    s.flush()
                row = SignInThrottle(key=key, failures=0, first_failure_at=now)
                s.add(row)
            row.failures += 1
            # The `free` wrong passwords are the allowance: the attempt after the last of them already waits.
            excess = row.failures - free + 1
            if excess > 0:
                row.blocked_until = now + timedelta(seconds=min(cap, 30 * 2 ** min(excess - 1, 20)))


def _audit_refusal(ctx: Context, account: Account | None, action: str, login: str, address: str,
                   wait_s: object) -> None:
    """A failed or throttled sign-in in the account's contract's audit trail; for a login that names no
    account (no contract to file it under) a line in the server's log, with the address."""
    detail = {"login": login[:150], **({"wait_s": wait_s} if wait_s is not None else {})}
    if account is None:
        log.warning("%s for unknown login %r from %s", action, login[:150], address)
        return
    with ctx.db.session() as s:
        s.add(AuditEvent(contract_id=account.contract_id, actor_kind="account", actor_id=account.id,
                         actor_name=account.login[:200], address=address[:64], action=action, detail=detail))


# -- sessions -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedIn:
    token: str
    session: DeviceSession
    account: Account
    took_over: DeviceSession | None


def _active(s: Session, ctx: Context, account_id: uuid.UUID, now: datetime) -> DeviceSession | None:
    idle_since = now - timedelta(seconds=ctx.settings.session_idle_s)
    return s.scalar(
        select(DeviceSession).where(
            DeviceSession.account_id == account_id, DeviceSession.ended_at.is_(None),
            DeviceSession.expires_at > now, DeviceSession.last_seen_at > idle_since,
        ).order_by(DeviceSession.created_at.desc()).limit(1)
    )


def sign_in(
    ctx: Context, login: str, password: str, device_name: str, *, takeover: bool, address: str, user_agent: str,
) -> SignedIn:
    now = utcnow()
    login_key = "login:" + fold(login)[:150]
    addr_key = "addr:" + address
    throttled: Problem | None = None
    with ctx.db.read() as s:  # only reads: no write lock held (nor waited for) before the password check
        account = s.scalar(select(Account).where(Account.login == login.strip()))
        try:
            _check_throttle(s, [login_key, addr_key], now)
        except Problem as problem:
            throttled = problem
    if throttled is not None:  # recorded after that transaction: a second writer inside it would wait on it
        _audit_refusal(ctx, account, "session.throttled", login, address, throttled.extra.get("retry_after_s"))
        raise throttled
    ok = check_password(account.password_hash if account else None, password)
    if not ok or account is None or account.disabled_at is not None:
        _record_failure(ctx, {login_key: ctx.settings.signin_free_failures,
                              addr_key: ctx.settings.signin_free_failures_per_address}, now)
        _audit_refusal(ctx, account, "session.signin_failed", login, address, None)
        raise Problem(401, "The login or the password is wrong. Check both and try again.", code="bad-credentials")
    token = new_token(SESSION_PREFIX)
    with ctx.db.session() as s:
        # Lock the account row: of two devices signing in at once, exactly one finds the other.
        s.scalar(select(Account).where(Account.id == account.id).with_for_update())
        current = _active(s, ctx, account.id, now)
        if current is not None and not takeover:
            raise Problem(
                409,
                f"This account is in use on another device ({current.device_name}) since "
                f"{current.created_at.isoformat(timespec='minutes')}. Sign in with “take over” to use it here; "
                "the other device will be signed out.",
                code="account-in-use", device_name=current.device_name,
                since=current.created_at.isoformat(), last_seen_at=current.last_seen_at.isoformat(),
            )
        idle_since = now - timedelta(seconds=ctx.settings.session_idle_s)
        s.execute(update(DeviceSession).where(
            DeviceSession.account_id == account.id, DeviceSession.ended_at.is_(None),
            DeviceSession.last_seen_at <= idle_since,
        ).values(ended_at=now, end_reason="idle"))
        if current is not None:
            current.ended_at, current.end_reason, current.ended_by_device = now, "takeover", device_name[:100]
        session = DeviceSession(
            account_id=account.id, contract_id=account.contract_id, token_hash=token_hash(token),
            device_name=device_name[:100], address=address[:64], user_agent=user_agent[:300],
            created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=ctx.settings.session_max_age_s),
        )
        s.add(session)
        s.execute(delete(SignInThrottle).where(SignInThrottle.key == login_key))
    return SignedIn(token, session, account, current)


def ended_message(session: DeviceSession) -> Problem:
    if session.end_reason == "takeover":
        return Problem(401, f"This account was signed in on another device ({session.ended_by_device}) at "
                       f"{session.ended_at.isoformat(timespec='minutes') if session.ended_at else ''}, so this device "
                       "was signed out. Sign in again to continue here.", code="signed-in-elsewhere",
                       headers={"WWW-Authenticate": "Bearer"}, device_name=session.ended_by_device)
    if session.end_reason == "admin":
        return Problem(401, "The clinic's administrator signed this device out. Sign in again to continue.",
                       code="signed-out-by-admin", headers={"WWW-Authenticate": "Bearer"})
    if session.end_reason == "password-reset":
        return Problem(401, "The administrator set a new password for this account. Sign in with the new password.",
                       code="password-reset", headers={"WWW-Authenticate": "Bearer"})
    if session.end_reason == "disabled":
        return Problem(401, "This account has been disabled. Ask the clinic's administrator.",
                       code="account-disabled", headers={"WWW-Authenticate": "Bearer"})
    if session.end_reason == "idle":
        return Problem(401, "You were signed out after a period without activity. Sign in again.",
                       code="session-idle", headers={"WWW-Authenticate": "Bearer"})
    return Problem(401, "You are signed out. Sign in again.", code="signed-out",
                   headers={"WWW-Authenticate": "Bearer"})


def sign_out(ctx: Context, session_id: uuid.UUID) -> None:
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).where(DeviceSession.id == session_id, DeviceSession.ended_at.is_(None))
                  .values(ended_at=utcnow(), end_reason="signout"))
