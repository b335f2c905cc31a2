"""Sign-in, takeover and sign-out leave the audit entries and the feed event they should (auth/sessions.py).

Written for the survivors of a mutmut run over auth/sessions.py (docs/testing.md): no test looked at who an
audit entry of a sign-in names, at a takeover's entry, at the `session` feed event, or at sign-out's entries.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import select

from chairside.auth import sessions
from chairside.auth.principal import Principal
from chairside.context import Context, build_context
from chairside.db.models import AuditEvent, Change, OutboxOp
from chairside.settings import Settings
from tests.factories import Viewer, make_account, make_tenant


def _entries(ctx: Context) -> list[AuditEvent]:
    with ctx.db.read() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("session.%")).order_by(AuditEvent.id)))
        for row in rows:
            s.expunge(row)
        return rows


def test_sign_in_takeover_and_sign_out_are_audited_with_who_where_and_which_device(
        ctx: Context, viewer: Viewer) -> None:
    first = sessions.sign_in(ctx, viewer.login, viewer.password, "受付 PC", takeover=False, address="10.0.0.5",
                             user_agent="test")
    second = sessions.sign_in(ctx, viewer.login, viewer.password, "診療室 iPad", takeover=True,
                              address="10.0.0.6", user_agent="test")
    assert second.took_over is not None and second.took_over.id == first.session.id
    who = Principal("viewer", second.account.contract_id, None, account_id=viewer.account_id,
                    session_id=second.session.id, name=viewer.login, device="診療室 iPad", address="10.0.0.6")
    sessions.sign_out(ctx, who)

    rows = _entries(ctx)
    assert [r.action for r in rows] == ["session.signin", "session.signin", "session.takeover", "session.signout"]
    for row, device, address in zip(rows, ["受付 PC", "診療室 iPad", "診療室 iPad", "診療室 iPad"],
                                    ["10.0.0.5", "10.0.0.6", "10.0.0.6", "10.0.0.6"], strict=True):
        assert (row.actor_kind, row.actor_id, row.actor_name) == ("account", viewer.account_id, viewer.login)
        assert (row.device, row.address, row.contract_id) == (device, address, second.account.contract_id)
    assert rows[0].detail is None and rows[1].detail is None
    assert rows[2].detail == {"from_device": "受付 PC"}

    # the cloud announces each sign-in on the feed, so relays end older sessions of the account
    with ctx.db.read() as s:
        events = list(s.scalars(select(Change).where(Change.kind == "session").order_by(Change.seq)))
        assert [e.entity_id for e in events] == [first.session.id, second.session.id]
        body = events[1].body
        assert body["account_id"] == str(viewer.account_id) and body["device_name"] == "診療室 iPad"

    # only a device session signs out; nothing is recorded otherwise
    with pytest.raises(ValueError, match="device session"):
        sessions.sign_out(ctx, dataclasses.replace(who, session_id=None))
    assert len(_entries(ctx)) == 4


def test_a_sign_in_at_a_relay_is_queued_for_the_cloud_and_audited_there(tmp_path: Path) -> None:
    """At a relay the sign-in goes to the outbox (the cloud reconciles one device at a time), not the feed."""
    rctx = build_context(Settings.load(environ={}, data_dir=tmp_path / "relay"), role="relay")
    try:
        tenant = make_tenant(rctx, "医療法人 リレー歯科", clinics=1)
        account = make_account(rctx, tenant, "relay-viewer")
        done = sessions.sign_in(rctx, account.login, account.password, "分院 PC", takeover=False,
                                address="192.168.1.20", user_agent="test")
        with rctx.db.read() as s:
            ops = list(s.scalars(select(OutboxOp).where(OutboxOp.kind == "session.signin")))
            assert [op.entity_id for op in ops] == [account.account_id]
            assert ops[0].body == {"account_id": str(account.account_id), "session_id": str(done.session.id),
                                   "device_name": "分院 PC", "at": done.session.created_at.isoformat()}
            assert s.scalars(select(Change).where(Change.kind == "session")).all() == []
        [row] = _entries(rctx)
        assert (row.action, row.actor_kind, row.actor_id, row.device) == (
            "session.signin", "account", account.account_id, "分院 PC")
    finally:
        rctx.db.dispose()
