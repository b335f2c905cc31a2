"""A contract admin's management of viewer accounts and capture stations: the one write path for each action.

Every action here is checked against the caller's contract (an id of another contract is "not found", exactly
like an id that does not exist), audited in the same transaction as the change, and, for an account, carried to
the contract's relays in that same transaction:

- `account_changed` (feed/changes.py) sends the account's row as it now is (its password hash, `disabled_at`,
  its clinic scope): a relay signs the account in from its replica, so it refuses a disabled account and
  accepts only the new password once the event arrives;
- a `session` event (`changes.session_started`, with a session id that no device holds) tells every relay
  that the account's sessions started before now are over: the relay ends them as it ends a device taken over
  elsewhere (relay/viewer.py `session_event`). Disabling, resetting the password and ending the device session
  all send it, so a tablet at the relay is signed out too.

Resetting a password: the admin sets a new password (at least 10 characters) and tells it to the person; the
account's open session ends at once. The account is not made to change it at the next sign-in (there is no
self-service password change yet): docs/viewer.md, "Accounts and stations".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from chairside.auth import audit
from chairside.auth.accounts import hash_password, validate_password
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Account, DeviceSession, Media, Station, Upload, utcnow
from chairside.errors import Problem
from chairside.feed import changes

# Why a session ended (DeviceSession.end_reason), besides signout / takeover / idle (auth/accounts.py).
ENDED_BY_ADMIN, ENDED_BY_RESET, ENDED_BY_DISABLE = "admin", "password-reset", "disabled"
# The device name the relays are told in the `session` event that ends their sessions of the account.
ADMIN_DEVICE = "管理者による終了 / ended by the administrator"


def account_not_found() -> Problem:
    return Problem(404, "This account was not found.", code="account-not-found")


@dataclass(frozen=True)
class CurrentSession:
    id: uuid.UUID
    device_name: str
    user_agent: str
    address: str
    since: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class AccountView:
    account: Account
    session: CurrentSession | None


@dataclass(frozen=True)
class StationView:
    station: Station
    last_contact_at: datetime | None


def _active_filter(ctx: Context, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Open, unexpired and not idle: the session that holds the account (auth/accounts.py `_active`)."""
    idle_since = now - timedelta(seconds=ctx.settings.session_idle_s)
    return (DeviceSession.ended_at.is_(None), DeviceSession.expires_at > now, DeviceSession.last_seen_at > idle_since)


def list_accounts(ctx: Context, principal: Principal) -> list[AccountView]:
    """The contract's accounts by login, each with its current device session (or None)."""
    now = utcnow()
    with ctx.db.read() as s:
        accounts = s.scalars(select(Account).where(Account.contract_id == principal.contract_id)
                             .order_by(Account.login)).all()
        sessions: dict[uuid.UUID, DeviceSession] = {}
        rows = s.scalars(select(DeviceSession).where(DeviceSession.contract_id == principal.contract_id,
                                                     *_active_filter(ctx, now))
                         .order_by(DeviceSession.created_at)).all()
        for row in rows:  # the latest wins, as at sign-in
            sessions[row.account_id] = row
        return [AccountView(a, _current(sessions.get(a.id))) for a in accounts]


def _current(row: DeviceSession | None) -> CurrentSession | None:
    if row is None:
        return None
    return CurrentSession(row.id, row.device_name, row.user_agent, row.address, row.created_at, row.last_seen_at)


def _account(s: Session, principal: Principal, account_id: uuid.UUID) -> Account:
    """The caller's contract's account, locked for the change; 404 for any other id."""
    account = s.scalar(select(Account).where(Account.id == account_id).with_for_update())
    if account is None or account.contract_id != principal.contract_id:
        raise account_not_found()
    return account


def _end_sessions(s: Session, account: Account, reason: str, now: datetime) -> list[str]:
    """End the account's open sessions here, and tell the relays to end theirs (a `session` event);
    answers the devices signed out here."""
    rows = s.scalars(select(DeviceSession).where(DeviceSession.account_id == account.id,
                                                 DeviceSession.ended_at.is_(None))).all()
    for row in rows:
        row.ended_at, row.end_reason, row.ended_by_device = now, reason, ADMIN_DEVICE[:100]
    changes.session_started(s, account.contract_id, account.id, uuid.uuid4(), ADMIN_DEVICE, now)
    return [row.device_name for row in rows]


def end_session(ctx: Context, principal: Principal, account_id: uuid.UUID) -> Account:
    """Sign the account out of its device (here and at the relays); audited as `session.end`."""
    now = utcnow()
    with ctx.db.session() as s:
        account = _account(s, principal, account_id)
        devices = _end_sessions(s, account, ENDED_BY_ADMIN, now)
        audit.add(s, principal, "session.end", detail={"account_id": str(account.id), "login": account.login,
                                                      "devices": devices})
        return account


def reset_password(ctx: Context, principal: Principal, account_id: uuid.UUID, password: str) -> Account:
    """Set a new password chosen by the admin; the open session ends at once. Audited as
    `account.password_reset` (never the password); relays learn the new hash and end their sessions."""
    validate_password(password)
    hashed = hash_password(password)  # outside the transaction: argon2 takes its moment
    now = utcnow()
    with ctx.db.session() as s:
        account = _account(s, principal, account_id)
        account.password_hash = hashed
        devices = _end_sessions(s, account, ENDED_BY_RESET, now)
        audit.add(s, principal, "account.password_reset", detail={"account_id": str(account.id),
                                                                  "login": account.login, "devices": devices})
        changes.account_changed(s, account)
        return account


def set_disabled(ctx: Context, principal: Principal, account_id: uuid.UUID, disabled: bool) -> Account:
    """Disable an account (its session ends at once; it cannot sign in, here or at a relay) or enable it again.

    An admin cannot disable their own account (someone must be left to enable it). Audited as
    `account.disable` / `account.enable`; doing it twice changes nothing and records nothing.
    """
    if disabled and account_id == principal.account_id:
        raise Problem(409, "You cannot disable your own account. Ask another administrator.",
                      code="own-account")
    now = utcnow()
    with ctx.db.session() as s:
        account = _account(s, principal, account_id)
        if (account.disabled_at is not None) == disabled:
            return account
        detail: dict[str, object] = {"account_id": str(account.id), "login": account.login}
        if disabled:
            account.disabled_at = now
            detail["devices"] = _end_sessions(s, account, ENDED_BY_DISABLE, now)
        else:
            account.disabled_at = None
        audit.add(s, principal, "account.disable" if disabled else "account.enable", detail=detail)
        changes.account_changed(s, account)
        return account


def list_stations(ctx: Context, principal: Principal) -> list[StationView]:
    """The contract's stations by name, each with its last contact: when it last sent a recording (the
    latest item stored from it, or upload begun by it). The server keeps no per-request trace of a station
    (its token is checked from a cache), so a station that only searched patients shows its last recording."""
    with ctx.db.read() as s:
        stations = s.scalars(select(Station).where(Station.contract_id == principal.contract_id)
                             .order_by(Station.name, Station.created_at)).all()
        last: dict[uuid.UUID, datetime] = {}
        for model in (Media, Upload):
            for station_id, at in s.execute(
                select(model.station_id, func.max(model.created_at))
                .where(model.contract_id == principal.contract_id, model.station_id.is_not(None))
                .group_by(model.station_id)
            ).all():
                if station_id is not None and at is not None and (station_id not in last or at > last[station_id]):
                    last[station_id] = at
        return [StationView(st, last.get(st.id)) for st in stations]
