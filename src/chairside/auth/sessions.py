"""Signing a viewer account in and out of a device, with the audit entries that go with it.

The session rules themselves (one device at a time, takeover, idle expiry, sign-in throttling)
are auth/accounts.py; this is the one place that signs in or out on behalf of a caller, so the
audit trail records every sign-in, takeover and sign-out.
"""

from __future__ import annotations

from chairside.auth import audit
from chairside.auth.accounts import SignedIn
from chairside.auth.accounts import sign_in as start_session
from chairside.auth.accounts import sign_out as end_session
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.feed import changes
from chairside.relay import viewer


def sign_in(
    ctx: Context, login: str, password: str, device_name: str, *, takeover: bool, address: str, user_agent: str,
) -> SignedIn:
    """Sign the account in on this device (taking over from another device when `takeover`), and record it:
    `session.signin`, and `session.takeover` naming the device signed out."""
    result = start_session(ctx, login, password, device_name, takeover=takeover, address=address,
                           user_agent=user_agent)
    who = Principal("viewer", result.account.contract_id, None, account_id=result.account.id,
                    session_id=result.session.id, name=result.account.login, device=result.session.device_name,
                    address=address)
    with ctx.db.session() as s:
        audit.add(s, who, "session.signin")
        if result.took_over:
            audit.add(s, who, "session.takeover", detail={"from_device": result.took_over.device_name})
        # One device across the cloud and its relays, latest sign-in wins (relay/viewer.py, docs/relay.md).
        if ctx.role.queues_writes_upstream:
            viewer.signed_in(s, result.session)
        else:
            changes.session_started(s, result.account.contract_id, result.account.id, result.session.id,
                                    result.session.device_name, result.session.created_at)
    return result


def sign_out(ctx: Context, principal: Principal) -> None:
    """End the principal's device session, and record it (`session.signout`)."""
    if principal.session_id is None:
        raise ValueError("only a device session signs out")
    end_session(ctx, principal.session_id)
    audit.record(ctx, principal, "session.signout")
