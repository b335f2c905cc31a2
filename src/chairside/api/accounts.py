"""Contract administration: viewer accounts, stations, enrollment, and what each may see."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.auth import admin as accounts_admin
from chairside.auth import audit
from chairside.auth.accounts import create_account
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Account, Station
from chairside.errors import Problem
from chairside.tenancy.service import enroll_station, new_enroll_code, revoke_station, set_clinic_scope

ScopedT = TypeVar("ScopedT", Account, Station)

router = APIRouter(prefix="/api/v1", tags=["administration"])


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clinic_ids: list[uuid.UUID] | None = Field(description="The clinics it may see; null for all of them.")


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=10, max_length=200)
    admin: bool = False
    clinic_ids: list[uuid.UUID] | None = None


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    login: str
    is_admin: bool
    clinic_scope: list[uuid.UUID] | None
    created_at: datetime
    disabled_at: datetime | None


class DeviceSessionOut(BaseModel):
    id: uuid.UUID
    device_name: str
    user_agent: str
    address: str
    since: datetime = Field(description="When this device signed in.")
    last_seen_at: datetime


class AccountWithSession(AccountOut):
    session: DeviceSessionOut | None = Field(description="The device the account is signed in on now, if any.")


class AccountList(BaseModel):
    items: list[AccountWithSession]


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=200, description="The new password (at least 10 characters).")


class StationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    clinic_scope: list[uuid.UUID] | None
    created_at: datetime
    revoked_at: datetime | None
    last_contact_at: datetime | None = Field(
        default=None, description="When it last sent a recording (the latest item stored or upload begun).")


class StationList(BaseModel):
    items: list[StationOut]


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=4, max_length=40, examples=["3F2A-09BC-77E1-D004"])
    name: str = Field(min_length=1, max_length=200, examples=["Chair 3"])


class EnrollCodeOut(BaseModel):
    clinic_id: uuid.UUID
    code: str = Field(description="Shown once: type it into the new station's setup within its lifetime.")
    expires_at: datetime


class Enrolled(BaseModel):
    id: uuid.UUID
    token: str = Field(description="Shown once: the station keeps it and sends it as a Bearer token.")


def _station_404() -> Problem:
    return Problem(404, "This station was not found.", code="station-not-found")


def _account_404() -> Problem:
    return accounts_admin.account_not_found()


@router.get("/accounts", response_model=AccountList, summary="The contract's viewer accounts")
def list_accounts(principal: Annotated[Principal, allow("admin")],
                  ctx: Annotated[Context, Depends(get_context)]) -> AccountList:
    views = accounts_admin.list_accounts(ctx, principal)
    return AccountList(items=[AccountWithSession(
        **AccountOut.model_validate(v.account).model_dump(),
        session=DeviceSessionOut(**vars(v.session)) if v.session else None) for v in views])


@router.post("/accounts", status_code=201, response_model=AccountOut, summary="Create a viewer account")
def post_account(body: AccountIn, principal: Annotated[Principal, allow("admin")],
                 ctx: Annotated[Context, Depends(get_context)]) -> Account:
    account = create_account(ctx, principal.contract_id, body.login, body.password, is_admin=body.admin,
                             clinic_ids=body.clinic_ids)
    audit.record(ctx, principal, "account.create", detail={"login": account.login, "admin": account.is_admin})
    return account


@router.put("/accounts/{account_id}/scope", response_model=AccountOut, summary="Set which clinics an account sees")
def put_account_scope(account_id: uuid.UUID, body: ScopeIn, principal: Annotated[Principal, allow("admin")],
                      ctx: Annotated[Context, Depends(get_context)]) -> Account:
    row = set_clinic_scope(ctx, principal, Account, account_id, body.clinic_ids)
    if row is None:
        raise _account_404()
    return row


@router.post("/accounts/{account_id}/password", response_model=AccountOut,
             summary="Set a new password for an account (its device is signed out at once)")
def post_password(account_id: uuid.UUID, body: PasswordIn, principal: Annotated[Principal, allow("admin")],
                  ctx: Annotated[Context, Depends(get_context)]) -> Account:
    return accounts_admin.reset_password(ctx, principal, account_id, body.password)


@router.post("/accounts/{account_id}/disable", response_model=AccountOut,
             summary="Disable an account: it is signed out at once and cannot sign in")
def post_disable(account_id: uuid.UUID, principal: Annotated[Principal, allow("admin")],
                 ctx: Annotated[Context, Depends(get_context)]) -> Account:
    return accounts_admin.set_disabled(ctx, principal, account_id, True)


@router.post("/accounts/{account_id}/enable", response_model=AccountOut, summary="Enable a disabled account again")
def post_enable(account_id: uuid.UUID, principal: Annotated[Principal, allow("admin")],
                ctx: Annotated[Context, Depends(get_context)]) -> Account:
    return accounts_admin.set_disabled(ctx, principal, account_id, False)


@router.delete("/accounts/{account_id}/session", status_code=204,
               summary="Sign an account out of its device (here and at the clinic's relays)")
def delete_account_session(account_id: uuid.UUID, principal: Annotated[Principal, allow("admin")],
                           ctx: Annotated[Context, Depends(get_context)]) -> Response:
    accounts_admin.end_session(ctx, principal, account_id)
    return Response(status_code=204)


@router.post("/clinics/{clinic_id}/enroll-codes", status_code=201, response_model=EnrollCodeOut,
             summary="A one-time code for enrolling a new station at a clinic")
def post_enroll_code(clinic_id: uuid.UUID, principal: Annotated[Principal, allow("admin")],
                     ctx: Annotated[Context, Depends(get_context)]) -> EnrollCodeOut:
    try:
        code, expires = new_enroll_code(ctx, clinic_id, principal)
    except LookupError:
        raise Problem(404, "This clinic was not found.", code="clinic-not-found") from None
    return EnrollCodeOut(clinic_id=clinic_id, code=code, expires_at=expires)


@router.get("/stations", response_model=StationList, summary="The contract's capture stations")
def list_stations(principal: Annotated[Principal, allow("admin")],
                  ctx: Annotated[Context, Depends(get_context)]) -> StationList:
    views = accounts_admin.list_stations(ctx, principal)
    return StationList(items=[StationOut.model_validate(v.station).model_copy(
        update={"last_contact_at": v.last_contact_at}) for v in views])


@router.put("/stations/{station_id}/scope", response_model=StationOut, summary="Set which clinics a station sees")
def put_station_scope(station_id: uuid.UUID, body: ScopeIn, principal: Annotated[Principal, allow("admin")],
                      ctx: Annotated[Context, Depends(get_context)]) -> Station:
    row = set_clinic_scope(ctx, principal, Station, station_id, body.clinic_ids)
    if row is None:
        raise _station_404()
    return row


@router.post("/stations/{station_id}/revoke", response_model=StationOut, summary="Revoke a lost station at once")
def post_revoke(station_id: uuid.UUID, principal: Annotated[Principal, allow("admin")],
                ctx: Annotated[Context, Depends(get_context)]) -> Station:
    try:
        station = revoke_station(ctx, station_id, principal.contract_id)
    except LookupError:
        raise _station_404() from None
    audit.record(ctx, principal, "station.revoke", detail={"station_id": str(station_id)})
    return station


@router.post("/stations/enroll", status_code=201, response_model=Enrolled, dependencies=[allow()],
             summary="Exchange a one-time enrollment code for the station's own token")
def post_enroll(body: EnrollIn, ctx: Annotated[Context, Depends(get_context)]) -> Enrolled:
    station, token = enroll_station(ctx, body.code, body.name)
    with ctx.db.session() as s:
        audit.add(s, None, "station.enroll", contract_id=station.contract_id,
                  detail={"station_id": str(station.id), "name": station.name})
    return Enrolled(id=station.id, token=token)
