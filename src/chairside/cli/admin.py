"""`chairside admin`: the operator's commands, run on the server against its database."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from chairside.auth.accounts import create_account
from chairside.cli import billing, keys, mirror, netcheck
from chairside.cli.common import DatabaseUrl, DataDir, emit, fail, load_settings, parse_uuid
from chairside.context import Context, build_context
from chairside.db.models import Relay, Station
from chairside.domain.plans import PlanError, onboarding_plan_hours, validate_plan_hours
from chairside.errors import Problem
from chairside.feed import changes
from chairside.media.trash import purge_older_than
from chairside.tenancy import service as tenancy
from chairside.uploads.sweep import sweep_expired

app = typer.Typer(no_args_is_help=True, help="Operator commands: contracts, clinics, stations, housekeeping.")
contract_app = typer.Typer(no_args_is_help=True, help="Contracts (one clinic, or a corporation's branches).")
clinic_app = typer.Typer(no_args_is_help=True, help="Clinics (sites) of a contract.")
station_app = typer.Typer(no_args_is_help=True, help="Capture stations at the chairs.")
account_app = typer.Typer(no_args_is_help=True, help="Viewer accounts of a contract.")
uploads_app = typer.Typer(no_args_is_help=True, help="Unfinished uploads.")
trash_app = typer.Typer(no_args_is_help=True, help="The trash of deleted media.")
relay_app = typer.Typer(no_args_is_help=True, help="Relay boxes in the clinics (they follow this cloud).")
feed_app = typer.Typer(no_args_is_help=True, help="The changes feed that relays follow.")
app.add_typer(contract_app, name="contract")
app.add_typer(clinic_app, name="clinic")
app.add_typer(station_app, name="station")
app.add_typer(account_app, name="account")
app.add_typer(uploads_app, name="uploads")
app.add_typer(trash_app, name="trash")
app.add_typer(relay_app, name="relay")
app.add_typer(feed_app, name="feed")


class State:
    ctx: Context | None = None


def _ctx() -> Context:
    assert State.ctx is not None
    return State.ctx


billing.register(app, contract_app, _ctx)  # plans, plan requests, quota, notices, invoices (cli/billing.py)
mirror.register_admin(app, _ctx)  # mirror sites following this cloud: create, list, revoke (cli/mirror.py)
netcheck.register(contract_app, _ctx)  # contract netcheck-code (cli/netcheck.py)
keys.register(app)  # the master key: create, rotate (cli/keys.py); needs no context


@app.callback()
def admin(typer_ctx: typer.Context, data: DataDir = Path("./chairside-data"), database_url: DatabaseUrl = None) -> None:
    if typer_ctx.invoked_subcommand == "keys":  # works on keys the running context could not open (cli/keys.py)
        typer_ctx.obj = load_settings(data, database_url)
        return
    State.ctx = build_context(load_settings(data, database_url))


_fail, _uuid = fail, parse_uuid


@contract_app.command("create")
def contract_create(
    name: Annotated[str, typer.Option(help="The clinic's or corporation's name.")],
    plan_hours: Annotated[str | None, typer.Option(help="Video hours in the plan: 100 to 4000, in steps of 100. "
                                                   "Default: the onboarding plan, 100 (after an import of "
                                                   "existing videos, run `contract onboard-plan`).")] = None,
) -> None:
    """Create a contract; prints its id."""
    try:
        hours = onboarding_plan_hours(0) if plan_hours is None else validate_plan_hours(plan_hours)
    except PlanError as e:
        _fail(e.message)
        return
    contract = tenancy.create_contract(_ctx(), name, hours)
    emit({"id": str(contract.id), "name": contract.name, "plan_hours": contract.plan_hours})


@clinic_app.command("create")
def clinic_create(
    contract: Annotated[str, typer.Option(help="Contract id.")],
    name: Annotated[str, typer.Option(help="The clinic's name.")],
) -> None:
    """Add a clinic (site) to a contract; prints its id."""
    contract_id = _uuid(contract, "contract")
    try:
        clinic = tenancy.create_clinic(_ctx(), contract_id, name)
    except LookupError as e:
        _fail(str(e))
    emit({"id": str(clinic.id), "contract_id": str(contract_id), "name": name})



@station_app.command("create")
def station_create(
    clinic: Annotated[str, typer.Option(help="Clinic id.")],
    name: Annotated[str, typer.Option(help="A name staff recognise, e.g. 'Chair 3'.")],
) -> None:
    """Register a capture station; prints its id and its token (shown once, stored hashed)."""
    try:
        station, token = tenancy.create_station(_ctx(), _uuid(clinic, "clinic"), name)
    except LookupError as e:
        _fail(str(e))
        return
    emit({"id": str(station.id), "clinic_id": str(station.clinic_id), "name": name, "token": token})


@station_app.command("list")
def station_list(clinic: Annotated[str, typer.Option(help="Clinic id.")]) -> None:
    """List a clinic's stations."""
    with _ctx().db.session() as s:
        rows = s.scalars(select(Station).where(Station.clinic_id == _uuid(clinic, "clinic"))).all()
        emit({"items": [{"id": str(r.id), "name": r.name, "revoked_at": r.revoked_at} for r in rows]})


@uploads_app.command("sweep")
def uploads_sweep() -> None:
    """Remove expired unfinished uploads and their bytes now (the server also does this on its own)."""
    emit({"removed": sweep_expired(_ctx())})


@trash_app.command("purge")
def trash_purge(
    older_than_days: Annotated[int, typer.Option(help="Purge items in the trash for longer than this.")] = 30,
) -> None:
    """Delete for good the items that have been in the trash longer than the given days."""
    ctx = _ctx()
    emit({"purged": purge_older_than(ctx.db, ctx.blobs, older_than_days)})


@station_app.command("enroll-code")
def station_enroll_code(clinic: Annotated[str, typer.Option(help="Clinic id.")]) -> None:
    """Print a one-time code (valid for a short time) that a new station exchanges for its token."""
    try:
        code, expires = tenancy.new_enroll_code(_ctx(), _uuid(clinic, "clinic"))
    except LookupError as e:
        _fail(str(e))
        return
    emit({"code": code, "expires_at": expires.isoformat(), "clinic_id": clinic,
          "enroll": "POST /api/v1/stations/enroll with {code, name}"})


@station_app.command("revoke")
def station_revoke(station: Annotated[str, typer.Argument(help="Station id.")]) -> None:
    """Revoke a lost or retired station: its token stops working at once."""
    try:
        row = tenancy.revoke_station(_ctx(), _uuid(station, "station"))
    except LookupError as e:
        _fail(str(e))
        return
    emit({"id": str(row.id), "revoked_at": row.revoked_at})


@account_app.command("create")
def account_create(
    contract: Annotated[str, typer.Option(help="Contract id.")],
    login: Annotated[str, typer.Option(help="The login (one word).")],
    admin: Annotated[bool, typer.Option("--admin", help="A contract admin: manages accounts and scopes.")] = False,
    clinics: Annotated[str | None, typer.Option(help="Comma-separated clinic ids it may see (default: all).")] = None,
) -> None:
    """Create a viewer account; the password is read from standard input (one line)."""
    password = sys.stdin.readline().rstrip("\r\n")
    clinic_ids = [_uuid(c.strip(), "clinic") for c in clinics.split(",") if c.strip()] if clinics else None
    try:
        account = create_account(_ctx(), _uuid(contract, "contract"), login, password, is_admin=admin,
                                 clinic_ids=clinic_ids)
    except Problem as e:
        _fail(e.detail)
        return
    emit({"id": str(account.id), "login": account.login, "admin": account.is_admin,
          "clinic_ids": account.clinic_scope})


# --- relays -------------------------------------------------------------------------------------




def _relay_json(relay: Relay) -> dict[str, object]:
    return {"id": str(relay.id), "clinic_id": str(relay.clinic_id), "contract_id": str(relay.contract_id),
            "name": relay.name, "created_at": relay.created_at, "revoked_at": relay.revoked_at,
            "last_seen_at": relay.last_seen_at}


@relay_app.command("create")
def relay_create(
    clinic: Annotated[str, typer.Option(help="Clinic id: the clinic whose LAN the relay serves.")],
    name: Annotated[str | None, typer.Option(help="A name staff recognise, e.g. 'Main clinic relay'.")] = None,
) -> None:
    """Register a relay box; prints its id and its token (shown once, stored hashed): the relay's relay_token."""
    try:
        relay, token = tenancy.create_relay(_ctx(), _uuid(clinic, "clinic"), name)
    except LookupError as e:
        _fail(str(e))
        return
    emit({"id": str(relay.id), "clinic_id": str(relay.clinic_id), "contract_id": str(relay.contract_id),
          "name": relay.name, "token": token})


@relay_app.command("list")
def relay_list(contract: Annotated[str, typer.Option(help="Contract id.")]) -> None:
    """List a contract's relays, with when each last reached this cloud."""
    with _ctx().db.read() as s:
        rows = s.scalars(select(Relay).where(Relay.contract_id == _uuid(contract, "contract"))
                         .order_by(Relay.created_at, Relay.id)).all()
        emit({"items": [_relay_json(r) for r in rows]})


@relay_app.command("revoke")
def relay_revoke(relay: Annotated[str, typer.Argument(help="Relay id.")]) -> None:
    """Revoke a lost or retired relay: its token stops working at once."""
    try:
        row = tenancy.revoke_relay(_ctx(), _uuid(relay, "relay"))
    except LookupError as e:
        _fail(str(e))
        return
    emit(_relay_json(row))


@relay_app.command("revoke-key")
def relay_revoke_key(relay: Annotated[str, typer.Argument(help="Relay id.")]) -> None:
    """A relay box was stolen or lost: destroy the key that releases its master key, at once and for good.

    Its next boot is refused by this cloud and its data stays unreadable (docs/relay.md). A running relay keeps
    running until it stops: revoke its token too (`admin relay revoke`) to cut it off the cloud now."""
    from chairside.keys import release

    relay_id = _uuid(relay, "relay")
    try:
        destroyed = release.revoke(_ctx().db, relay_id)
    except LookupError as e:
        _fail(str(e))
        return
    emit({"relay_id": str(relay_id), "release_key_destroyed": destroyed,
          "message": "中継機の鍵を取り消しました。この中継機は次回起動できません / the relay's key is revoked: it "
                     "cannot start again" if destroyed else
                     "この中継機の鍵はクラウドにありません（取り消し済みか未設定） / the cloud held no key for this "
                     "relay (already revoked, or never sealed)"})


@feed_app.command("backfill")
def feed_backfill(contract: Annotated[str, typer.Option(help="Contract id.")]) -> None:
    """Put every row of a contract made before the feed existed into its feed (run once, before its first relay)."""
    try:
        written = changes.backfill(_ctx().db, _uuid(contract, "contract"))
    except LookupError as e:
        _fail(str(e))
        return
    emit({"contract_id": contract, "events": written})
