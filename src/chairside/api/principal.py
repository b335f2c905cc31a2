"""Who is calling, and which roles each route admits.

Every route declares its roles with `allow(...)`; a test walks the routes and fails on
one that declares none. Roles: operator, admin (contract admin), viewer, station, relay.
Stations send their token as a Bearer token; viewer devices send their session token as a
Bearer token or in the HttpOnly cookie. A request that changes state through the cookie
must echo the session's CSRF value in `X-CSRF-Token`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from fastapi import Depends, Request
from sqlalchemy import select, update

from chairside import readcache
from chairside.context import Context, get_context
from chairside.db.models import Account, DeviceSession, Relay, Station, utcnow
from chairside.errors import Problem

ROLES = ("operator", "admin", "viewer", "station", "relay")
COOKIE = "cs_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOUCH_EVERY = timedelta(seconds=30)  # last_seen_at is written at most this often per session


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


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is a safe one-way store for them."""
    return hashlib.sha256(token.encode()).hexdigest()


def _scope(raw: list[str] | None) -> frozenset[uuid.UUID] | None:
    return None if raw is None else frozenset(uuid.UUID(c) for c in raw)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def credentials(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


_SIGN_IN = Problem(
    401,
    "Sign in first: this request carries no valid access token. A capture station sends "
    "'Authorization: Bearer <token>' with the token it received when it was registered.",
    code="unauthenticated",
    headers={"WWW-Authenticate": "Bearer"},
)


STATION_PREFIX = "cs_st"


def cached(request: Request, ctx: Context) -> Principal | None:
    """A capture station known from the read cache (readcache.py), with no I/O; None on a miss."""
    token, _ = credentials(request)
    if token is None or not token.startswith(STATION_PREFIX + "_"):
        return None
    hit = readcache.for_ctx(ctx).get(("station", token_hash(token)), ctx.db.writes)
    return None if hit is None else dataclasses.replace(hit, address=client_address(request))


def _station(ctx: Context, token: str, address: str) -> Principal:
    generation = ctx.db.writes
    principal = _station_from_db(ctx, token, address)
    readcache.for_ctx(ctx).put(("station", token_hash(token)), generation, principal)
    return principal


def _station_from_db(ctx: Context, token: str, address: str) -> Principal:
    with ctx.db.read() as s:
        station = s.scalar(select(Station).where(Station.token_hash == token_hash(token)))
        if station is None:
            raise _SIGN_IN
        if station.revoked_at is not None:
            raise Problem(401, "This station has been revoked. Ask the clinic's administrator to register it again.",
                          code="station-revoked", headers={"WWW-Authenticate": "Bearer"})
        return Principal("station", station.contract_id, _scope(station.clinic_scope), station_id=station.id,
                         name=station.name, device=station.name, address=address)


RELAY_PREFIX = "cs_rl"


def _relay(ctx: Context, token: str, address: str) -> Principal:
    """A clinic's relay box: it acts for the whole contract (it forwards its stations' work)."""
    now = utcnow()
    with ctx.db.read() as s:
        relay = s.scalar(select(Relay).where(Relay.token_hash == token_hash(token)))
        if relay is None:
            raise _SIGN_IN
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


def _session(ctx: Context, token: str, address: str) -> Principal:
    from chairside.auth.accounts import ended_message
    now = utcnow()
    with ctx.db.session() as s:
        row = s.execute(
            select(DeviceSession, Account).join(Account, Account.id == DeviceSession.account_id)
            .where(DeviceSession.token_hash == token_hash(token))
        ).one_or_none()
        if row is None:
            raise _SIGN_IN
        session, account = row
        if session.ended_at is None and (
            session.last_seen_at <= now - timedelta(seconds=ctx.settings.session_idle_s) or session.expires_at <= now
        ):
            session.ended_at, session.end_reason = now, "idle"
        if session.ended_at is not None:
            problem = ended_message(session)
        elif account.disabled_at is not None:
            problem = Problem(401, "This account has been disabled. Ask the clinic's administrator.",
                              code="account-disabled", headers={"WWW-Authenticate": "Bearer"})
        else:
            problem = None
            if now - session.last_seen_at >= _TOUCH_EVERY:
                s.execute(update(DeviceSession).where(DeviceSession.id == session.id).values(last_seen_at=now))
    if problem is not None:
        raise problem
    return Principal("admin" if account.is_admin else "viewer", account.contract_id, _scope(account.clinic_scope),
                     account_id=account.id, session_id=session.id, name=account.login,
                     device=session.device_name, address=address)


def authenticate(request: Request, ctx: Context) -> Principal:
    from chairside.auth.accounts import SESSION_PREFIX, csrf_for
    token, from_cookie = credentials(request)
    if token is None:
        raise _SIGN_IN
    address = client_address(request)
    if token.startswith(SESSION_PREFIX + "_"):
        principal = _session(ctx, token, address)
        if from_cookie and request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get("x-csrf-token", ""), csrf_for(token)
        ):
            raise Problem(403, "This page is out of date (its security token is missing). Reload it and try again.",
                          code="csrf")
        return principal
    if token.startswith(RELAY_PREFIX + "_"):
        return _relay(ctx, token, address)
    return _station(ctx, token, address)


def allow(*roles: str) -> Any:
    """A dependency that admits only the given roles; `allow()` with no roles marks a public route."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    async def dependency(request: Request, ctx: Context = Depends(get_context)) -> Principal | None:
        if not roles:
            return None
        principal = cached(request, ctx)
        if principal is None:
            principal = await anyio.to_thread.run_sync(authenticate, request, ctx)
        if principal.role not in roles:
            raise Problem(403, "Your account may not do this. Ask the clinic's administrator.", code="forbidden")
        request.state.principal = principal
        return principal

    dependency.chairside_roles = roles  # type: ignore[attr-defined]
    return Depends(dependency)


def route_roles(dependant_calls: list[Callable[..., Any]]) -> tuple[str, ...] | None:
    """The roles a route declared through `allow`, or None when it declared none."""
    for call in dependant_calls:
        roles = getattr(call, "chairside_roles", None)
        if roles is not None:
            return tuple(roles)
    return None
