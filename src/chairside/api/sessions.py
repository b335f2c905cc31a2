"""Viewer sign-in on one device at a time: sessions, heartbeat, and who am I."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.principal import COOKIE, allow, client_address, credentials
from chairside.auth import sessions
from chairside.auth.accounts import csrf_for
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import utcnow

router = APIRouter(prefix="/api/v1", tags=["sessions"])
ANYONE = ("operator", "admin", "viewer", "station", "relay")


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)
    device_name: str = Field(min_length=1, max_length=100, examples=["Reception iPad"])
    takeover: bool = Field(default=False, description="Sign the account out of the other device and in here.")


class SessionOut(BaseModel):
    token: str
    expires_at: datetime
    csrf_token: str = Field(description="Echo in X-CSRF-Token on state-changing requests made with the cookie.")
    took_over_from: str | None = None


class Me(BaseModel):
    role: str
    contract_id: uuid.UUID
    clinic_ids: list[uuid.UUID] | None
    name: str
    device: str
    account_id: uuid.UUID | None = None
    station_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    csrf_token: str | None = None


@router.post("/sessions", status_code=201, response_model=SessionOut, dependencies=[allow()],
             summary="Sign in on this device (409 when the account is in use elsewhere, unless takeover)")
async def create_session(
    body: SignInBody, request: Request, response: Response, ctx: Annotated[Context, Depends(get_context)],
) -> SessionOut:
    result = await anyio.to_thread.run_sync(lambda: sessions.sign_in(
        ctx, body.login, body.password, body.device_name, takeover=body.takeover,
        address=client_address(request), user_agent=request.headers.get("user-agent", ""),
    ))
    max_age = int((result.session.expires_at - utcnow()).total_seconds())
    response.set_cookie(COOKIE, result.token, max_age=max_age, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")
    return SessionOut(token=result.token, expires_at=result.session.expires_at, csrf_token=csrf_for(result.token),
                      took_over_from=result.took_over.device_name if result.took_over else None)


@router.delete("/sessions/current", status_code=204, summary="Sign out of this device")
def delete_session(
    principal: Annotated[Principal, allow("admin", "viewer")], ctx: Annotated[Context, Depends(get_context)],
) -> Response:
    sessions.sign_out(ctx, principal)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.post("/sessions/current/heartbeat", status_code=204, summary="Keep this device's session alive")
def heartbeat(principal: Annotated[Principal, allow("admin", "viewer")]) -> Response:
    return Response(status_code=204)  # authentication itself refreshed last_seen_at


@router.get("/me", response_model=Me, summary="Who this request is signed in as")
def me(principal: Annotated[Principal, allow(*ANYONE)], request: Request) -> Me:
    token, _ = credentials(request)
    return Me(
        role=principal.role, contract_id=principal.contract_id,
        clinic_ids=sorted(principal.clinic_ids) if principal.clinic_ids is not None else None,
        name=principal.name, device=principal.device, account_id=principal.account_id,
        station_id=principal.station_id, session_id=principal.session_id,
        csrf_token=csrf_for(token) if token and principal.session_id else None,
    )
