"""Which roles each route admits, and who the request's caller is.

Every route declares its roles with `allow(...)`; a test walks the routes and fails on
one that declares none. Roles: operator, admin (contract admin), viewer, station, relay.
Stations send their token as a Bearer token; viewer devices send their session token as a
Bearer token or in the HttpOnly cookie. A request that changes state through the cookie
must echo the session's CSRF value in `X-CSRF-Token`. Turning a token into a `Principal` is
auth/principal.py.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import Depends, Request

from chairside.api.deps import get_context
from chairside.auth.accounts import csrf_for
from chairside.auth.principal import (
    ROLES,
    Principal,
    relay_principal,
    session_principal,
    sign_in_first,
    station_principal,
)
from chairside.auth.tokens import RELAY_PREFIX, SESSION_PREFIX, STATION_PREFIX, token_hash
from chairside.context import Context
from chairside.errors import Problem

COOKIE = "cs_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def credentials(request: Request) -> tuple[str | None, bool]:
    """The token and whether it came from the cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def cached(request: Request, ctx: Context) -> Principal | None:
    """A capture station known from the read cache (readcache.py), with no I/O; None on a miss."""
    token, _ = credentials(request)
    if token is None or not token.startswith(STATION_PREFIX + "_"):
        return None
    hit = ctx.reads.get(("station", token_hash(token)), ctx.db.writes)
    return None if hit is None else dataclasses.replace(hit, address=client_address(request))


def _station(ctx: Context, token: str, address: str) -> Principal:
    generation = ctx.db.writes
    principal = station_principal(ctx, token, address)
    ctx.reads.put(("station", token_hash(token)), generation, principal)
    return principal


def authenticate(request: Request, ctx: Context) -> Principal:
    token, from_cookie = credentials(request)
    if token is None:
        raise sign_in_first()
    address = client_address(request)
    if token.startswith(SESSION_PREFIX + "_"):
        principal = session_principal(ctx, token, address)
        if from_cookie and request.method not in SAFE_METHODS and not hmac.compare_digest(
            request.headers.get("x-csrf-token", ""), csrf_for(token)
        ):
            raise Problem(403, "This page is out of date (its security token is missing). Reload it and try again.",
                          code="csrf")
        return principal
    if token.startswith(RELAY_PREFIX + "_"):
        return relay_principal(ctx, token, address)
    return _station(ctx, token, address)


class RoleGate:
    """The dependency `allow(...)` makes: admits the request's caller when its role is one of `roles`."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        self.roles = roles

    async def __call__(self, request: Request, ctx: Context = Depends(get_context)) -> Principal | None:
        if not self.roles:
            return None
        principal = cached(request, ctx)
        if principal is None:
            principal = await anyio.to_thread.run_sync(authenticate, request, ctx)
        if principal.role not in self.roles:
            raise Problem(403, "Your account may not do this. Ask the clinic's administrator.", code="forbidden")
        request.state.principal = principal
        return principal


def allow(*roles: str) -> Any:
    """A dependency that admits only the given roles; `allow()` with no roles marks a public route."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")
    return Depends(RoleGate(roles))


def route_roles(dependant_calls: list[Callable[..., Any]]) -> tuple[str, ...] | None:
    """The roles a route declared through `allow`, or None when it declared none."""
    for call in dependant_calls:
        if isinstance(call, RoleGate):
            return call.roles
    return None
