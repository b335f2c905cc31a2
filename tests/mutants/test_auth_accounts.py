"""Viewer accounts (auth/accounts.py) called directly on a real database, value by value: what a login and a
password may be, the clinic scope, the throttle's allowance, doubling and cap, the audit of refused sign-ins,
one device at a time (idle, expired, taken over), and the message each way of being signed out gives.

Written for a mutmut run over auth/accounts.py (docs/testing.md, "Mutation testing"): the session tests go
through a real server and check statuses and a few fields; the throttle test sees only that 429 comes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import insert, select, text, update

from chairside.auth import accounts
from chairside.context import Context
from chairside.db.models import Account, AuditEvent, Change, DeviceSession, SignInThrottle, utcnow
from chairside.errors import Problem
from tests.factories import Tenant, Viewer, make_account, make_contract

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Real argon2id, at its lowest cost: the production profile takes most of a second per hash or check, and
    these tests make and check dozens (the hashes' parameters are argon2's business, not this module's)."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    accounts._dummy_hash.cache_clear()
    yield
    accounts._dummy_hash.cache_clear()


def _refusal(call: object, *args: object, **kwargs: object) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def _sign_in(ctx: Context, who: Viewer, device: str = "PC", *, takeover: bool = False, password: str | None = None,
             login: str | None = None, address: str = "192.0.2.1") -> accounts.SignedIn:
    return accounts.sign_in(ctx, who.login if login is None else login, who.password if password is None else password,
                            device, takeover=takeover, address=address, user_agent="UA")


def _throttle(ctx: Context) -> dict[str, tuple[int, datetime, datetime | None]]:
    with ctx.db.session() as s:
        return {r.key: (r.failures, r.first_failure_at, r.blocked_until) for r in s.scalars(select(SignInThrottle))}


def _audit(ctx: Context) -> list[AuditEvent]:
    with ctx.db.session() as s:
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        s.expunge_all()
        return rows


# --- passwords and logins -------------------------------------------------------------------------


def test_passwords_are_argon2id_and_an_unknown_account_never_matches() -> None:
    stored = accounts.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert accounts.check_password(stored, "correct horse") is True
    assert accounts.check_password(stored, "correct hors") is False
    assert accounts.check_password("not an argon2 hash", "correct horse") is False
    accounts._dummy_hash.cache_clear()
    accounts.prepare_sign_in()
    assert accounts._dummy_hash.cache_info().currsize == 1
    assert accounts._dummy_hash() == accounts._dummy_hash()
    assert accounts.check_password(accounts._dummy_hash(), "chairside-timing-equaliser") is True
    assert accounts.check_password(None, "chairside-timing-equaliser") is False  # the equaliser is no password


def test_the_csrf_value_is_derived_from_the_session_token() -> None:
    assert accounts.csrf_for("cs_se_abc") == hashlib.sha256(b"csrf:cs_se_abc").hexdigest()[:32]
    assert len(accounts.csrf_for("x")) == 32


def test_a_password_has_at_least_ten_characters() -> None:
    accounts.validate_password("0123456789")
    problem = _refusal(accounts.validate_password, "012345678")
    assert (problem.status, problem.code, problem.detail) == (
        422, "weak-password", "The password must have at least 10 characters.")


def test_an_account_is_created_with_its_login_scope_role_and_feed_event(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    other = make_contract(ctx, "よその歯科")
    a = accounts.create_account(ctx, c, "  reception  ", "pw-0123456789", clinic_ids=[tenant.clinic_ids[1]])
    assert (a.login, a.contract_id, a.is_admin, a.clinic_scope) == ("reception", c, False, [str(tenant.clinic_ids[1])])
    assert accounts.check_password(a.password_hash, "pw-0123456789")
    boss = accounts.create_account(ctx, c, "x" * 100, "pw-0123456789", is_admin=True)
    assert (boss.is_admin, boss.clinic_scope) == (True, None)
    with ctx.db.session() as s:
        events = s.scalars(select(Change.entity_id).where(Change.kind == "account", Change.contract_id == c)).all()
        assert events == [a.id, boss.id]
    for bad in ("", "   ", "x" * 101, "two words", "tab\there", "new\nline"):
        problem = _refusal(accounts.create_account, ctx, c, bad, "pw-0123456789")
        assert (problem.status, problem.code, problem.detail) == (
            422, "bad-login", "A login is one word of up to 100 characters, without spaces.")
    assert _refusal(accounts.create_account, ctx, c, "short-pw", "012345678").code == "weak-password"
    taken = _refusal(accounts.create_account, ctx, other, " reception", "pw-0123456789")
    assert (taken.status, taken.code, taken.detail) == (
        409, "login-taken", "The login 'reception' is taken. Choose another.")


def test_a_scope_names_one_or_more_of_the_contracts_own_clinics(ctx: Context, tenant: Tenant) -> None:
    c = tenant.contract_id
    theirs = Tenant(make_contract(ctx, "よその歯科"), [], [])
    a, b = tenant.clinic_ids
    with ctx.db.session() as s:
        assert accounts.parse_scope(s, c, None) is None
        assert accounts.parse_scope(s, c, [b, a, b]) == sorted([str(a), str(b)])
        for wrong in ([], [uuid.uuid4()], [a, uuid.uuid4()]):
            problem = _refusal(accounts.parse_scope, s, c, wrong)
            assert (problem.status, problem.code, problem.detail) == (
                422, "bad-scope", "Choose one or more of this contract's clinics (or all clinics).")
        _refusal(accounts.parse_scope, s, theirs.contract_id, [a])


# --- the throttle ---------------------------------------------------------------------------------


def test_the_wait_is_told_in_seconds_below_ninety_then_in_whole_minutes_rounded_up() -> None:
    assert [accounts._wait_text(s) for s in (1, 89, 90, 120, 121, 900)] == [
        "1 seconds", "89 seconds", "2 minutes", "2 minutes", "3 minutes", "15 minutes"]


def _block(ctx: Context, key: str, until: datetime | None) -> None:
    with ctx.db.session() as s:
        s.add(SignInThrottle(key=key, failures=9, first_failure_at=NOW - timedelta(minutes=5), blocked_until=until))


def test_a_blocked_key_answers_429_with_the_longest_wait(ctx: Context) -> None:
    _block(ctx, "login:a", NOW + timedelta(seconds=40))
    _block(ctx, "addr:x", NOW + timedelta(seconds=199, milliseconds=500))
    _block(ctx, "login:now", NOW)
    _block(ctx, "login:past", NOW - timedelta(seconds=1))
    _block(ctx, "login:never", None)
    _block(ctx, "login:someone-else", NOW + timedelta(hours=1))
    with ctx.db.session() as s:
        problem = _refusal(accounts._check_throttle, s, ["login:a", "addr:x"], NOW)
        assert (problem.status, problem.code, problem.headers, problem.extra) == (
            429, "signin-throttled", {"Retry-After": "200"}, {"retry_after_s": 200})
        assert problem.detail == "Too many wrong passwords. Wait 4 minutes and try again."
        assert _refusal(accounts._check_throttle, s, ["login:a"], NOW).extra == {"retry_after_s": 41}
        accounts._check_throttle(s, ["login:now", "login:past", "login:never", "login:unknown"], NOW)


def test_past_the_free_allowance_a_key_waits_30_seconds_doubling_up_to_the_cap(ctx: Context) -> None:
    waits = []
    for i in range(8):
        accounts._record_failure(ctx, {"login:a": 3, "addr:x": 5}, NOW)
        rows = _throttle(ctx)
        assert rows["login:a"][:2] == (i + 1, NOW) and rows["addr:x"][:2] == (i + 1, NOW)
        until = rows["login:a"][2]
        waits.append(None if until is None else (until - NOW).total_seconds())
        if i < 4:
            assert rows["addr:x"][2] is None
    assert waits == [None, None, 30, 60, 120, 240, 480, 900]  # the cap: signin_max_wait_s
    assert (_throttle(ctx)["addr:x"][2] or NOW) - NOW == timedelta(seconds=240)  # 8 of 5 free: 30 × 2³


def test_an_hour_after_the_first_failure_the_count_starts_again(ctx: Context) -> None:
    for _ in range(3):
        accounts._record_failure(ctx, {"login:a": 1}, NOW)
    an_hour = NOW + timedelta(hours=1)
    accounts._record_failure(ctx, {"login:a": 1}, an_hour)  # exactly an hour: still the same count
    assert _throttle(ctx)["login:a"] == (4, NOW, an_hour + timedelta(seconds=240))
    later = an_hour + timedelta(microseconds=1)
    accounts._record_failure(ctx, {"login:a": 2}, later)
    assert _throttle(ctx)["login:a"] == (1, later, None)


def test_the_doubling_stops_at_the_cap_even_a_very_long_one(ctx: Context) -> None:
    patient = replace(ctx, settings=replace(ctx.settings, signin_max_wait_s=10**9))
    with ctx.db.session() as s:
        s.add(SignInThrottle(key="login:a", failures=20, first_failure_at=NOW))
    accounts._record_failure(patient, {"login:a": 1}, NOW)  # the 21st failure: 2**20 × 30 s
    assert _throttle(ctx)["login:a"][2] == NOW + timedelta(seconds=30 * 2**20)
    accounts._record_failure(patient, {"login:a": 1}, NOW)  # the exponent stops at 20
    assert _throttle(ctx)["login:a"][2] == NOW + timedelta(seconds=30 * 2**20)


def test_a_refused_sign_in_is_audited_in_the_accounts_contract_or_logged(
        ctx: Context, tenant: Tenant, viewer: Viewer, caplog: pytest.LogCaptureFixture) -> None:
    with ctx.db.session() as s:
        account = s.get(Account, viewer.account_id)
        assert account is not None
        s.expunge(account)
    long_login = "L" * 300
    accounts._audit_refusal(ctx, account, "session.throttled", long_login, "a" * 100, 42)
    accounts._audit_refusal(ctx, account, "session.signin_failed", viewer.login, "192.0.2.9", None)
    first, second = _audit(ctx)
    assert (first.contract_id, first.actor_kind, first.actor_id, first.actor_name, first.address, first.action,
            first.detail) == (tenant.contract_id, "account", viewer.account_id, viewer.login, "a" * 64,
                              "session.throttled", {"login": "L" * 150, "wait_s": 42})
    assert (second.action, second.address, second.detail) == (
        "session.signin_failed", "192.0.2.9", {"login": viewer.login})
    with caplog.at_level(logging.WARNING, logger="chairside.auth.accounts"):
        accounts._audit_refusal(ctx, None, "session.signin_failed", long_login, "192.0.2.7", None)
    assert [r.getMessage() for r in caplog.records] == [
        f"session.signin_failed for unknown login {'L' * 150!r} from 192.0.2.7"]
    assert len(_audit(ctx)) == 2


# --- signing in -----------------------------------------------------------------------------------


def test_a_sign_in_opens_one_session_with_the_devices_details(ctx: Context, tenant: Tenant, viewer: Viewer) -> None:
    _block(ctx, "login:" + viewer.login, None)
    _block(ctx, "addr:192.0.2.1", None)
    before = utcnow()
    done = accounts.sign_in(ctx, f"  {viewer.login} ", viewer.password, "D" * 120, takeover=False,
                            address="2001:db8::" + "f" * 80, user_agent="U" * 400)
    assert done.token.startswith("cs_se_") and done.took_over is None
    assert (done.account.id, done.account.login) == (viewer.account_id, viewer.login)
    with ctx.db.session() as s:
        [session] = s.scalars(select(DeviceSession)).all()
        assert (session.id, session.account_id, session.contract_id, session.device_name, session.address,
                session.user_agent, session.ended_at, session.token_hash) == (
            done.session.id, viewer.account_id, tenant.contract_id, "D" * 100, ("2001:db8::" + "f" * 80)[:64],
            "U" * 300, None, hashlib.sha256(done.token.encode()).hexdigest())
        assert before <= session.created_at == session.last_seen_at <= utcnow()
        assert session.expires_at == session.created_at + timedelta(days=7)
    assert set(_throttle(ctx)) == {"addr:192.0.2.1"}  # the login's failures are forgiven, not the address's
    assert _audit(ctx) == []


def test_wrong_passwords_unknown_and_disabled_logins_get_one_answer_and_count(
        ctx: Context, tenant: Tenant, viewer: Viewer, caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(ctx.settings, signin_free_failures=3, signin_free_failures_per_address=5)
    strict = replace(ctx, settings=settings)
    wrong = _refusal(_sign_in, strict, viewer, password="nope-nope-nope", login=f"  {viewer.login} ")
    assert (wrong.status, wrong.code, wrong.detail) == (
        401, "bad-credentials", "The login or the password is wrong. Check both and try again.")
    [failed] = _audit(ctx)
    assert (failed.action, failed.actor_id, failed.detail) == (
        "session.signin_failed", viewer.account_id, {"login": f"  {viewer.login} "})
    with caplog.at_level(logging.WARNING, logger="chairside.auth.accounts"):
        unknown = _refusal(_sign_in, strict, Viewer("nobody", "pw-x-0123456789", uuid.uuid4()))
        upper = _refusal(_sign_in, strict, viewer, login=viewer.login.upper())  # another login, the same key
    assert (unknown.status, unknown.code, unknown.detail) == (upper.status, upper.code, upper.detail) == (
        wrong.status, wrong.code, wrong.detail)
    assert "unknown login 'nobody'" in caplog.text and f"unknown login '{viewer.login.upper()}'" in caplog.text
    rows = _throttle(ctx)
    assert {k: v[0] for k, v in rows.items()} == {f"login:{viewer.login}": 2, "login:nobody": 1, "addr:192.0.2.1": 3}
    with ctx.db.session() as s:
        s.execute(update(Account).where(Account.id == viewer.account_id).values(disabled_at=utcnow()))
    disabled = _refusal(_sign_in, strict, viewer)  # the right password, a disabled account
    assert (disabled.status, disabled.code) == (401, "bad-credentials")
    rows = _throttle(ctx)
    assert rows[f"login:{viewer.login}"][0] == 3 and rows[f"login:{viewer.login}"][2] is not None
    assert rows["addr:192.0.2.1"][0] == 4 and rows["addr:192.0.2.1"][2] is None  # 4 of the address's 5
    throttled = _refusal(_sign_in, strict, viewer)
    assert (throttled.status, throttled.code) == (429, "signin-throttled")
    audit = _audit(ctx)
    assert [a.action for a in audit] == ["session.signin_failed", "session.signin_failed", "session.throttled"]
    assert audit[-1].detail == {"login": viewer.login, "wait_s": throttled.extra["retry_after_s"]}
    assert 0 < throttled.extra["retry_after_s"] <= 31
    assert {k: v[0] for k, v in _throttle(ctx).items()}[f"login:{viewer.login}"] == 3  # a throttled try adds nothing
    with ctx.db.session() as s:
        assert s.scalars(select(DeviceSession)).all() == []


def test_a_throttled_address_is_refused_for_every_login(ctx: Context, viewer: Viewer) -> None:
    _block(ctx, "addr:192.0.2.66", utcnow() + timedelta(minutes=10))
    assert _refusal(_sign_in, ctx, viewer, address="192.0.2.66").code == "signin-throttled"
    _sign_in(ctx, viewer, address="192.0.2.67")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Sign-ins happen at NOW (the clock is a system boundary: the session limits are compared to the instant)."""
    monkeypatch.setattr(accounts, "utcnow", lambda: NOW)
    return NOW


def _session(ctx: Context, session_id: uuid.UUID) -> DeviceSession:
    with ctx.db.session() as s:
        row = s.get(DeviceSession, session_id)
        assert row is not None
        s.expunge(row)
        return row


def test_a_long_login_is_counted_by_its_first_150_characters(ctx: Context, viewer: Viewer) -> None:
    _refusal(_sign_in, ctx, Viewer("Ｎ" * 200, "pw-0123456789", uuid.uuid4()))  # folded (NFKC, lower case) first
    assert set(_throttle(ctx)) == {"login:" + "n" * 150, "addr:192.0.2.1"}


def test_one_device_at_a_time_unless_it_takes_over(ctx: Context, viewer: Viewer, clock: datetime) -> None:
    first = _sign_in(ctx, viewer, "Chair 1")
    assert (first.session.created_at, first.session.last_seen_at, first.session.expires_at) == (
        NOW, NOW, NOW + timedelta(days=7))
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).values(last_seen_at=NOW - timedelta(seconds=1799)))
    problem = _refusal(_sign_in, ctx, viewer, "Phone")
    assert (problem.status, problem.code) == (409, "account-in-use")
    assert problem.detail == (
        "This account is in use on another device (Chair 1) since 2026-06-15T03:00+00:00. Sign in "
        "with “take over” to use it here; the other device will be signed out.")
    assert problem.extra == {"device_name": "Chair 1", "since": "2026-06-15T03:00:00+00:00",
                             "last_seen_at": "2026-06-15T02:30:01+00:00"}
    second = _sign_in(ctx, viewer, "P" * 150, takeover=True)
    assert second.took_over is not None and second.took_over.id == first.session.id
    old = _session(ctx, first.session.id)
    assert (old.end_reason, old.ended_by_device, old.ended_at) == ("takeover", "P" * 100, NOW)
    third = _sign_in(ctx, viewer, "Tablet", takeover=True)
    assert third.took_over is not None and third.took_over.id == second.session.id  # the open one
    assert _session(ctx, third.session.id).ended_at is None


def test_of_two_open_sessions_the_newest_is_the_one_named(ctx: Context, viewer: Viewer, clock: datetime) -> None:
    """Never two at once through sign_in (the account's row lock); a row written otherwise still gets one answer."""
    with ctx.db.session() as s:
        for device, age in (("Old PC", 60), ("Newer PC", 10), ("Middle PC", 30)):
            s.add(DeviceSession(account_id=viewer.account_id, contract_id=_contract_of(ctx, viewer), device_name=device,
                                token_hash=hashlib.sha256(device.encode()).hexdigest(),
                                created_at=NOW - timedelta(minutes=age), last_seen_at=NOW,
                                expires_at=NOW + timedelta(days=1)))
    assert _refusal(_sign_in, ctx, viewer, "Phone").extra["device_name"] == "Newer PC"


def _contract_of(ctx: Context, viewer: Viewer) -> uuid.UUID:
    with ctx.db.session() as s:
        account = s.get(Account, viewer.account_id)
        assert account is not None
        return account.contract_id


# PostgreSQL only: SQLite has no row locks (its one writer at a time serialises sign-ins). Not a skip on SQLite,
# so that a run's skips stay zero and a new one is seen.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_sign_in_waits_for_the_accounts_row_lock(ctx: Context, viewer: Viewer, clock: datetime) -> None:
    """What makes two devices signing in at once end with exactly one in: the other device's session, committed
    while this sign-in waits on the account's row, is found (the racing test in tests/api rarely overlaps them)."""
    answers: list[int] = []

    def sign_in() -> None:
        try:
            _sign_in(ctx, viewer, "Phone")
            answers.append(201)
        except Problem as problem:
            answers.append(problem.status)

    def sign_in_waits_on_a_lock() -> bool:
        with ctx.db.engine.connect() as watcher:
            return bool(watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )).scalar())

    with ctx.db.engine.connect() as holder, holder.begin():
        holder.execute(select(Account.id).where(Account.id == viewer.account_id).with_for_update())
        holder.execute(insert(DeviceSession).values(
            id=uuid.uuid4(), account_id=viewer.account_id, contract_id=_contract_of(ctx, viewer), token_hash="0" * 64,
            device_name="Chair 1", created_at=NOW, last_seen_at=NOW, expires_at=NOW + timedelta(days=1)))
        thread = threading.Thread(target=sign_in)
        thread.start()
        deadline = time.monotonic() + 30
        while thread.is_alive() and not sign_in_waits_on_a_lock():
            assert time.monotonic() < deadline, "the sign-in neither waited nor finished"
            time.sleep(0.02)
    thread.join(30)
    assert answers == [409]  # it waited, then found Chair 1's session


def test_idle_expired_and_ended_sessions_do_not_hold_the_account(
        ctx: Context, viewer: Viewer, clock: datetime) -> None:
    idle = _sign_in(ctx, viewer, "Idle PC")
    with ctx.db.session() as s:  # idle for exactly session_idle_s: free, and ended as idle
        s.execute(update(DeviceSession).values(last_seen_at=NOW - timedelta(seconds=1800)))
    fresh = _sign_in(ctx, viewer, "PC 2")
    assert fresh.took_over is None
    old = _session(ctx, idle.session.id)
    assert (old.end_reason, old.ended_at, old.ended_by_device) == ("idle", NOW, None)
    with ctx.db.session() as s:  # active a moment ago, but signed in 7 days ago: expired exactly now
        s.execute(update(DeviceSession).where(DeviceSession.id == fresh.session.id)
                  .values(expires_at=NOW, last_seen_at=NOW - timedelta(seconds=1799)))
    expired = _sign_in(ctx, viewer, "PC 3")
    assert expired.took_over is None
    assert _session(ctx, fresh.session.id).end_reason is None  # not idle long enough to be ended as idle
    accounts.sign_out(ctx, expired.session.id)
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).where(DeviceSession.id == expired.session.id)
                  .values(last_seen_at=NOW - timedelta(hours=5)))
    assert _sign_in(ctx, viewer, "PC 4").took_over is None
    assert _session(ctx, expired.session.id).end_reason == "signout"  # an ended session is not ended again


def test_another_accounts_session_neither_holds_nor_is_ended_by_this_one(
        ctx: Context, tenant: Tenant, viewer: Viewer, clock: datetime) -> None:
    other = make_account(ctx, tenant, "viewer-b")
    theirs = _sign_in(ctx, other, "Their PC")
    mine = _sign_in(ctx, viewer, "My PC")
    assert mine.took_over is None
    accounts.sign_out(ctx, mine.session.id)
    with ctx.db.session() as s:
        s.execute(update(DeviceSession).where(DeviceSession.id == theirs.session.id)
                  .values(last_seen_at=NOW - timedelta(hours=1)))
    _sign_in(ctx, viewer, "My PC")
    assert _session(ctx, theirs.session.id).end_reason is None


# --- signing out ----------------------------------------------------------------------------------


def test_sign_out_ends_only_an_open_session(ctx: Context, viewer: Viewer) -> None:
    done = _sign_in(ctx, viewer)
    accounts.sign_out(ctx, done.session.id)
    with ctx.db.session() as s:
        row = s.get(DeviceSession, done.session.id)
        assert row is not None and row.end_reason == "signout" and row.ended_at is not None
        ended_at = row.ended_at
        s.execute(update(DeviceSession).values(end_reason="admin"))
    accounts.sign_out(ctx, done.session.id)
    with ctx.db.session() as s:
        row = s.get(DeviceSession, done.session.id)
        assert row is not None and (row.end_reason, row.ended_at) == ("admin", ended_at)


def _ended(reason: str | None, device: str | None = None, at: datetime | None = None) -> DeviceSession:
    return DeviceSession(end_reason=reason, ended_by_device=device, ended_at=at)


BEARER = {"WWW-Authenticate": "Bearer"}


def test_each_way_of_being_signed_out_has_its_message() -> None:
    kicked = accounts.ended_message(_ended("takeover", "Phone", NOW))
    assert (kicked.status, kicked.code, kicked.headers, kicked.extra) == (
        401, "signed-in-elsewhere", BEARER, {"device_name": "Phone"})
    assert kicked.detail == ("This account was signed in on another device (Phone) at 2026-06-15T03:00+00:00, so this "
                             "device was signed out. Sign in again to continue here.")
    assert "at , so" in accounts.ended_message(_ended("takeover", "Phone")).detail
    expected = {
        "admin": ("signed-out-by-admin",
                  "The clinic's administrator signed this device out. Sign in again to continue."),
        "password-reset": ("password-reset",
                           "The administrator set a new password for this account. Sign in with the new password."),
        "disabled": ("account-disabled", "This account has been disabled. Ask the clinic's administrator."),
        "idle": ("session-idle", "You were signed out after a period without activity. Sign in again."),
        "signout": ("signed-out", "You are signed out. Sign in again."),
        None: ("signed-out", "You are signed out. Sign in again."),
    }
    for reason, (code, detail) in expected.items():
        problem = accounts.ended_message(_ended(reason))
        assert (problem.status, problem.code, problem.detail, problem.headers) == (401, code, detail, BEARER), reason
