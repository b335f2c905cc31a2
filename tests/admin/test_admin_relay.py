"""The relay learns of the admin's actions through the changes feed: a tablet signed in at the clinic's relay is
signed out when the admin resets the account's password or disables it at the cloud, and the relay then signs in
only the new password, or nobody. A real relay (follower, uploader) behind a WAN line; SQLite cloud."""

# ruff: noqa: F811  (the fixtures imported from the relay tests are used as arguments)
from __future__ import annotations

import httpx
import pytest

from tests.conftest import sign_in as cloud_sign_in
from tests.factories import Viewer, make_account
from tests.relay.follow_fixtures import cloud, wait_for  # noqa: F401  (fixtures)
from tests.relay_viewer.conftest import Clinic, bearer, clinic, get, sign_in  # noqa: F401  (fixtures)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reset_then_a_disable_at_the_cloud_sign_the_relays_tablet_out(clinic: Clinic) -> None:
    c = clinic
    boss = make_account(c.cloud.ctx, c.cloud.contract_id, "relay-admin", admin=True)
    admin = {"Authorization": f"Bearer {cloud_sign_in(c.cloud.server, boss, 'Office PC')}"}
    tablet = bearer(sign_in(c.relay.url, c.viewer, "Counselling iPad"))
    assert get(c.relay.url, "/api/v1/me", tablet).status_code == 200

    r = httpx.post(f"{c.cloud.url}/api/v1/accounts/{c.viewer.account_id}/password", headers=admin,
                   json={"password": "after-reset-2026"}, timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: get(c.relay.url, "/api/v1/me", tablet).status_code == 401, "the relay's session to end")
    renewed = Viewer(c.viewer.login, "after-reset-2026", c.viewer.account_id)
    wait_for(lambda: sign_in(c.relay.url, renewed, "Counselling iPad", takeover=True).status_code == 201,
             "the new password at the relay")
    assert sign_in(c.relay.url, c.viewer, "Counselling iPad", takeover=True).status_code == 401  # the old one

    tablet = bearer(sign_in(c.relay.url, renewed, "Counselling iPad", takeover=True))
    r = httpx.post(f"{c.cloud.url}/api/v1/accounts/{c.viewer.account_id}/disable", headers=admin, timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: get(c.relay.url, "/api/v1/me", tablet).status_code == 401, "the relay's session to end")
    c.wan.outage()  # with the cloud away the relay decides from its replica alone
    assert sign_in(c.relay.url, renewed, "Counselling iPad", takeover=True).status_code == 401
