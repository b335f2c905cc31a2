"""Who is calling: a capture station, a clinic's relay, a viewer account's device session, or the operator.

A `Principal` is made from a token (stations and relays: a bearer token; viewer devices: a
session token) and carries what every read and write is checked against: the contract, and
the clinics it may see. Tokens are stored only as SHA-256. The HTTP side (where the token comes
from, CSRF, which roles a route admits) is api/principal.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chairside.auth.accounts import ended_message
from chairside.auth.tokens import token_hash
from chairside.context import Context
from chairside.db.models import Account, DeviceSession, Relay, Station, utcnow
from chairside.errors import Problem

ROLES = ("operator", "admin", "viewer", "station", "relay")
_TOUCH_EVERY = timedelta(seconds=30)  # last_seen_at is written at most this often per session or relay


@dataclass(frozen=True)
class Principal:
    role: str
    contract_id: uuid.UUID
    # None: every clinic of the contract.
    clinic_ids: frozenset[uuid.UUID] | None
    station_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    name: str = ""
    device: str = ""
    address: str = ""
    relay_id: uuid.UUID | None = None

    def sees_clinic(self, clinic_id: uuid.UUID) -> bool:
        return self.clinic_ids is None or clinic_id in self.clinic_ids




def _scope(raw: list[str] | None) -> frozenset[uuid.UUID] | None:
    return None if raw is None else frozenset(uuid.UUID(c) for c in raw)


def sign_in_first() -> Problem:
    return Problem(
        401,
        "Sign in first: this request carries no valid access token. A capture station sends "
        "'Authorization: Bearer <token>' with the token it received when it was registered.",
        code="unauthenticated",
        headers={"WWW-Authenticate": "Bearer"},
    )



def station_principal(ctx: Context, token: str, address: str) -> Principal:
    with ctx.db.read() as s:
        station = s.scalar(select(Station).where(Station.token_hash == token_hash(token)))
        if station is None:
            raise sign_in_first()
        if station.revoked_at is not None:
            raise Problem(401, "This station has been revoked. Ask the clinic's administrator to register it again.",
                          code="station-revoked", headers={"WWW-Authenticate": "Bearer"})
        return Principal("station", station.contract_id, _scope(station.clinic_scope), station_id=station.id,
                         name=station.name, device=station.name, address=address)



def relay_principal(ctx: Context, token: str, address: str) -> Principal:
    """A clinic's relay box: it acts for the whole contract (it forwards its stations' work)."""
    now = utcnow()
    with ctx.db.read() as s:
        relay = s.scalar(select(Relay).where(Relay.token_hash == token_hash(token)))
        if relay is None:
            raise sign_in_first()
        if relay.revoked_at is not None:
            raise Problem(401, "This relay has been revoked. Ask the operator for a new relay token and set it in "
                          "the relay's settings (CHAIRSIDE_RELAY_TOKEN).", code="relay-revoked",
                          headers={"WWW-Authenticate": "Bearer"})
        stale = relay.last_seen_at is None or now - relay.last_seen_at >= _TOUCH_EVERY
    if stale:
        with ctx.db.session() as s:
            s.execute(update(Relay).where(Relay.id == relay.id).values(last_seen_at=now))
    return Principal("relay", relay.contract_id, None, relay_id=relay.id, name=relay.name, device=relay.name,
                     address=address)


def _session_row(s: Session, token: str) -> tuple[DeviceSession, Account] | None:
    """The device session with this token, and its account."""
    row = s.execute(
        select(DeviceSession, Account).join(Account, Account.id == DeviceSession.account_id)
        .where(DeviceSession.token_hash == token_hash(token))
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def session_principal(ctx: Context, token: str, address: str) -> Principal:
    """The device session's caller. Most requests only read (no write lock: a page's thumbnails, asked for
    at once, do not queue behind one another's audit writes for it); a session whose last_seen_at is due
    (every 30 s) or that has lapsed is settled in a write transaction."""
    now = utcnow()
    with ctx.db.read() as s:
        row = _session_row(s, token)
    if row is None:
        raise sign_in_first()
    session, account = row
    if session.ended_at is None and (
        now - session.last_seen_at >= _TOUCH_EVERY or session.expires_at <= now
        or session.last_seen_at <= now - timedelta(seconds=ctx.settings.session_idle_s)
    ):
        return _session_principal_writing(ctx, token, address, now)
    if session.ended_at is not None:
        raise ended_message(session)
    if account.disabled_at is not None:
        raise _disabled()
    return _principal_of(session, account, address)


def _disabled() -> Problem:
    return Problem(401, "This account has been disabled. Ask the clinic's administrator.",
                   code="account-disabled", headers={"WWW-Authenticate": "Bearer"})


def _principal_of(session: DeviceSession, account: Account, address: str) -> Principal:
    return Principal("admin" if account.is_admin else "viewer", account.contract_id, _scope(account.clinic_scope),
                     account_id=account.id, session_id=session.id, name=account.login,
                     device=session.device_name, address=address)


def _session_principal_writing(ctx: Context, token: str, address: str, now: datetime) -> Principal:
    """As session_principal, under the write lock: ends a lapsed session, or records that it was seen now."""
    with ctx.db.session() as s:
        row = _session_row(s, token)
        if row is None:
            raise sign_in_first()
        session, account = row
        if session.ended_at is None and (
            session.last_seen_at <= now - timedelta(seconds=ctx.settings.session_idle_s) or session.expires_at <= now
        ):
            session.ended_at, session.end_reason = now, "idle"
        if session.ended_at is not None:
            problem = ended_message(session)
        elif account.disabled_at is not None:
            problem = _disabled()
        else:
            problem = None
            if now - session.last_seen_at >= _TOUCH_EVERY:
                s.execute(update(DeviceSession).where(DeviceSession.id == session.id).values(last_seen_at=now))
    if problem is not None:
        raise problem
    return _principal_of(session, account, address)
