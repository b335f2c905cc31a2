"""Who is calling, and which roles each route admits.

Every route declares its roles with `allow(...)`; a test walks the routes and fails on
one that declares none. Roles: operator, admin (contract admin), viewer, station, relay.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import select

from chairside.api.context import Context, get_context
from chairside.db.models import Station
from chairside.errors import Problem

ROLES = ("operator", "admin", "viewer", "station", "relay")


@dataclass(frozen=True)
class Principal:
    role: str
    contract_id: uuid.UUID
    # None: every clinic of the contract.
    clinic_ids: frozenset[uuid.UUID] | None
    station_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    name: str = ""

    def sees_clinic(self, clinic_id: uuid.UUID) -> bool:
        return self.clinic_ids is None or clinic_id in self.clinic_ids


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is a safe one-way store for them."""
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


_SIGN_IN = Problem(
    401,
    "Sign in first: this request carries no valid access token. A capture station sends "
    "'Authorization: Bearer <token>' with the token printed when it was registered.",
    code="unauthenticated",
    headers={"WWW-Authenticate": "Bearer"},
)


def _authenticate(request: Request, ctx: Context) -> Principal:
    token = _bearer(request)
    if token is None:
        raise _SIGN_IN
    with ctx.db.session() as s:
        station = s.scalar(select(Station).where(Station.token_hash == token_hash(token)))
        if station is None:
            raise _SIGN_IN
        if station.revoked_at is not None:
            raise Problem(
                401,
                "This station has been revoked. Ask the clinic's administrator to register it again.",
                code="station-revoked",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scope = (
            None
            if station.clinic_scope is None
            else frozenset(uuid.UUID(c) for c in station.clinic_scope)
        )
        return Principal("station", station.contract_id, scope, station_id=station.id, name=station.name)


def allow(*roles: str) -> Any:
    """A dependency that admits only the given roles; `allow()` with no roles marks a public route."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    def dependency(request: Request, ctx: Context = Depends(get_context)) -> Principal | None:
        if not roles:
            return None
        principal = _authenticate(request, ctx)
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
