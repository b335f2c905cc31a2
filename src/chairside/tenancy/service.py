"""Contracts, their clinics, and the stations and relay boxes of each clinic: the one write path for each.

Every write here also appends its changes-feed event (feed/changes.py) in the same transaction,
so the clinics' relays learn of it; a contract starts with its first plan record (billing reads
the plan history from it). Used by the admin CLI, the API, the demo, tests and benchmarks alike.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.accounts import parse_scope
from chairside.auth.principal import Principal
from chairside.auth.tokens import RELAY_PREFIX, STATION_PREFIX, new_token, token_hash
from chairside.context import Context
from chairside.db.models import Account, Clinic, Contract, EnrollmentCode, Relay, Station, utcnow
from chairside.domain.plans import onboarding_plan_hours
from chairside.errors import Problem
from chairside.feed import changes
from chairside.quota.plan_changes import record_first_plan

Scoped = TypeVar("Scoped", Account, Station)


def create_contract(ctx: Context, name: str, plan_hours: int | None = None, *,
                    created_at: datetime | None = None) -> Contract:
    """A new contract with its first plan (default: the onboarding plan for nothing stored yet, 100 hours)."""
    with ctx.db.session() as s:
        contract = Contract(name=name, plan_hours=onboarding_plan_hours(0) if plan_hours is None else plan_hours,
                            created_at=created_at or utcnow())
        s.add(contract)
        s.flush()
        record_first_plan(s, contract)
        changes.contract_changed(s, contract.id)
    return contract


def create_clinic(ctx: Context, contract_id: uuid.UUID, name: str, *, created_at: datetime | None = None) -> Clinic:
    with ctx.db.session() as s:
        if s.get(Contract, contract_id) is None:
            raise LookupError(f"no contract {contract_id}")
        clinic = Clinic(contract_id=contract_id, name=name, **({"created_at": created_at} if created_at else {}))
        s.add(clinic)
        s.flush()
        changes.clinic_changed(s, clinic)
    return clinic


def create_station(ctx: Context, clinic_id: uuid.UUID, name: str) -> tuple[Station, str]:
    """Register a capture station; answers the row and its token (shown once, stored hashed)."""
    token = new_token(STATION_PREFIX)
    with ctx.db.session() as s:
        clinic = s.get(Clinic, clinic_id)
        if clinic is None:
            raise LookupError(f"no clinic {clinic_id}")
        station = Station(contract_id=clinic.contract_id, clinic_id=clinic.id, name=name, token_hash=token_hash(token))
        s.add(station)
        changes.station_changed(s, station)
    return station, token



def new_enroll_code(ctx: Context, clinic_id: uuid.UUID, principal: Principal | None = None) -> tuple[str, datetime]:
    """A one-time code (shown once) that a new station exchanges for its token. With a `principal` (a contract
    admin in the viewer) the clinic must be of its contract (LookupError otherwise) and the code is audited
    (`station.enroll_code`, never the code itself) in the same transaction."""
    code = "-".join(secrets.token_hex(2).upper() for _ in range(4))  # e.g. 3F2A-09BC-77E1-D004
    expires = utcnow() + timedelta(seconds=ctx.settings.enroll_code_ttl_s)
    with ctx.db.session() as s:
        clinic = s.get(Clinic, clinic_id)
        if clinic is None or (principal is not None and clinic.contract_id != principal.contract_id):
            raise LookupError(f"no clinic {clinic_id}")
        s.add(EnrollmentCode(contract_id=clinic.contract_id, clinic_id=clinic.id,
                             code_hash=token_hash(code.replace("-", "").upper()), expires_at=expires))
        if principal is not None:
            audit.add(s, principal, "station.enroll_code",
                      detail={"clinic_id": str(clinic.id), "expires_at": expires.isoformat()})
    return code, expires


def enroll_station(ctx: Context, code: str, name: str) -> tuple[Station, str]:
    normalized = code.replace("-", "").replace(" ", "").upper()
    now = utcnow()
    token = new_token(STATION_PREFIX)
    with ctx.db.session() as s:
        row = s.scalar(select(EnrollmentCode).where(EnrollmentCode.code_hash == token_hash(normalized))
                       .with_for_update())
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise Problem(422, "This enrollment code is wrong, expired or already used. Ask the administrator "
                          "for a new one (codes are valid for a short time and only once).", code="bad-enroll-code")
        station = Station(contract_id=row.contract_id, clinic_id=row.clinic_id, name=name[:200],
                          token_hash=token_hash(token))
        s.add(station)
        s.flush()
        row.used_at, row.station_id = now, station.id
        changes.station_changed(s, station)  # the clinic's relay learns the new station (and its token hash)
    return station, token


def revoke_station(ctx: Context, station_id: uuid.UUID, contract_id: uuid.UUID | None = None) -> Station:
    with ctx.db.session() as s:
        station = s.get(Station, station_id)
        if station is None or (contract_id is not None and station.contract_id != contract_id):
            raise LookupError(f"no station {station_id}")
        if station.revoked_at is None:
            station.revoked_at = utcnow()
            changes.station_changed(s, station)  # relays stop accepting its token too
        return station


def create_relay(ctx: Context, clinic_id: uuid.UUID, name: str | None = None) -> tuple[Relay, str]:
    """Register a clinic's relay box; answers the row and its token (shown once, stored hashed)."""
    token = new_token(RELAY_PREFIX)
    with ctx.db.session() as s:
        clinic = s.get(Clinic, clinic_id)
        if clinic is None:
            raise LookupError(f"no clinic {clinic_id}")
        relay = Relay(contract_id=clinic.contract_id, clinic_id=clinic.id, name=(name or f"{clinic.name} relay")[:200],
                      token_hash=token_hash(token))
        s.add(relay)
        s.flush()
    return relay, token


def revoke_relay(ctx: Context, relay_id: uuid.UUID) -> Relay:
    with ctx.db.session() as s:
        relay = s.get(Relay, relay_id)
        if relay is None:
            raise LookupError(f"no relay {relay_id}")
        if relay.revoked_at is None:
            relay.revoked_at = utcnow()
        return relay


def set_clinic_scope(ctx: Context, principal: Principal, model: type[Scoped], ident: uuid.UUID,
                     clinic_ids: list[uuid.UUID] | None) -> Scoped | None:
    """Set the clinics a station or an account of the caller's contract may see (None: all), audited;
    answers None when there is no such station or account in the caller's contract."""
    with ctx.db.session() as s:
        row = s.get(model, ident)
        if row is None or row.contract_id != principal.contract_id:
            return None
        row.clinic_scope = parse_scope(s, principal.contract_id, clinic_ids)
        key = "station_id" if isinstance(row, Station) else "account_id"
        audit.add(s, principal, "scope.set", detail={key: str(ident), "clinic_ids": row.clinic_scope})
        if isinstance(row, Station):
            changes.station_changed(s, row)  # relays enforce the station's scope too
        else:
            changes.account_changed(s, row)  # and the account's, when it signs in at a relay
        return row
