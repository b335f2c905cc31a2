"""Test data, seeded through the same services as production: one small function per thing a test needs.

Each factory calls the one write path of its entity (tenancy/service.py, patients/service.py,
auth/accounts.py), so seeded rows come with everything a real write brings: the changes-feed
events, the first plan record, the patient's search rows, field clocks and audit entry. A test
that needs a row no service would write (an edge case, or thousands of rows at once) builds it
itself and says why. Fixtures (tests/conftest.py) call these; bench/_common.py seeds the same
way for the benchmarks, which run standalone and do not import tests/.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx
from sqlalchemy import update

from chairside.auth.accounts import create_account
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import Account, OutboxOp, Patient
from chairside.patients import service as patients_service
from chairside.tenancy.service import create_clinic, create_contract, create_relay, create_station


@dataclass
class Tenant:
    contract_id: uuid.UUID
    clinic_ids: list[uuid.UUID]
    station_tokens: list[str]  # one station per clinic, in order
    station_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.station_tokens[0]


@dataclass
class Viewer:
    login: str
    password: str
    account_id: uuid.UUID


def operator(contract_id: uuid.UUID) -> Principal:
    """The operator acting for a whole contract (as the admin CLI and the demo do)."""
    return Principal("operator", contract_id, None, name="tests")


def make_contract(ctx: Context, name: str = "テスト歯科", plan_hours: int | None = 100, *,
                  created_at: datetime | None = None) -> uuid.UUID:
    """A contract with its first plan record and its feed event (plan_hours=None: the onboarding plan)."""
    return create_contract(ctx, name, plan_hours, created_at=created_at).id


def make_clinic(ctx: Context, contract_id: uuid.UUID, name: str = "本院", *,
                created_at: datetime | None = None) -> uuid.UUID:
    return create_clinic(ctx, contract_id, name, created_at=created_at).id


def make_station(ctx: Context, clinic_id: uuid.UUID, name: str = "Chair 1") -> tuple[uuid.UUID, str]:
    """A capture station: its id and its token."""
    station, token = create_station(ctx, clinic_id, name)
    return station.id, token


def make_relay_token(ctx: Context, clinic_id: uuid.UUID, name: str | None = None) -> str:
    """A clinic's relay box; answers its token (use `create_relay` for the row too)."""
    return create_relay(ctx, clinic_id, name)[1]


def make_tenant(ctx: Context, name: str = "テスト歯科", clinics: int = 2, *, plan_hours: int | None = 100,
                clinic_names: Sequence[str] | None = None, created_at: datetime | None = None) -> Tenant:
    """A contract with clinics (named "<name> 1", "<name> 2"… unless `clinic_names`) and a station
    ("Chair 1", "Chair 2"…) at each; in the feed: the contract, its clinics, then their stations."""
    names = list(clinic_names) if clinic_names is not None else [f"{name} {i + 1}" for i in range(clinics)]
    contract_id = make_contract(ctx, name, plan_hours, created_at=created_at)
    clinic_ids = [make_clinic(ctx, contract_id, n, created_at=created_at) for n in names]
    stations = [make_station(ctx, cid, f"Chair {i + 1}") for i, cid in enumerate(clinic_ids)]
    return Tenant(contract_id, clinic_ids, [token for _, token in stations], [sid for sid, _ in stations])


def make_patient(ctx: Context, contract_id: uuid.UUID, clinic_id: uuid.UUID, chart_no: str = "00001",
                 name: str = "山田 太郎", name_kana: str = "ヤマダ タロウ", *, birth_date: date | None = None,
                 sex: str = "male", principal: Principal | None = None) -> Patient:
    """A patient registered by the operator (or `principal`): search rows, clocks, audit and feed event included."""
    return patients_service.create(ctx, principal or operator(contract_id), clinic_id, chart_no, name, name_kana,
                                   birth_date, sex)


def make_account(ctx: Context, tenant: Tenant | uuid.UUID, login: str, *, admin: bool = False,
                 clinic_ids: list[uuid.UUID] | None = None, created_at: datetime | None = None,
                 disabled_at: datetime | None = None) -> Viewer:
    """A viewer (or, with admin=True, an administrator) account of a tenant or contract, with a known password.

    `created_at` and `disabled_at` are set after the service made the account (no service writes
    a past creation time, and none disables an account yet): for billing, which counts by those days.
    """
    contract_id = tenant.contract_id if isinstance(tenant, Tenant) else tenant
    password = f"pw-{login}-0123456789"
    account = create_account(ctx, contract_id, login, password, is_admin=admin, clinic_ids=clinic_ids)
    times = {k: v for k, v in (("created_at", created_at), ("disabled_at", disabled_at)) if v is not None}
    if times:
        with ctx.db.session() as s:
            s.execute(update(Account).where(Account.id == account.id).values(**times))
    return Viewer(login, password, account.id)


def outbox_row(ctx: Context, op_id: int) -> OutboxOp:
    """A relay's outbox op as stored now (detached, to read its fields after the session)."""
    with ctx.db.read() as s:
        row = s.get(OutboxOp, op_id)
        assert row is not None
        s.expunge(row)
        return row


def problem_response(status: int, detail: str, code: str | None = None) -> httpx.Response:
    """The cloud's problem+json answer, as a relay's tests make the cloud give it (httpx.MockTransport)."""
    body: dict[str, Any] = {"type": "about:blank", "title": detail, "status": status, "detail": detail}
    if code:
        body["code"] = code
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/problem+json"})
