"""quota/contacts.py: the addresses a contract's notices are e-mailed to, checked before they are stored."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Contract
from chairside.errors import Problem
from chairside.quota import contacts
from chairside.tenancy.service import create_contract


def _stored(ctx: Context, contract_id: uuid.UUID) -> list[str] | None:
    with ctx.db.read() as s:
        return s.scalar(select(Contract.contact_emails).where(Contract.id == contract_id))


def test_addresses_are_stored_trimmed_once_each_in_order_and_can_be_cleared(ctx: Context) -> None:
    c = create_contract(ctx, "連絡先歯科", 100).id
    stored = contacts.set_contacts(ctx, c, [" incho@example-dental.jp", "uketsuke@example-dental.jp ",
                                            "incho@example-dental.jp"])
    assert stored == _stored(ctx, c) == ["incho@example-dental.jp", "uketsuke@example-dental.jp"]
    assert contacts.set_contacts(ctx, c, []) == _stored(ctx, c) == []


@pytest.mark.parametrize("bad", [
    "not-an-address",
    "a@b.jp\nBcc: everyone@example.com",  # a forged header
    "a@b.jp, c@d.jp",  # two in one
    "incho@example-dental",  # no dot in the domain
    "a" * 244 + "@example.jp",  # 255 characters: longer than a path may be
])
def test_anything_but_one_address_is_refused_and_nothing_is_stored(ctx: Context, bad: str) -> None:
    c = create_contract(ctx, "連絡先歯科", 100).id
    contacts.set_contacts(ctx, c, ["incho@example-dental.jp"])
    with pytest.raises(Problem) as refused:
        contacts.set_contacts(ctx, c, ["uketsuke@example-dental.jp", bad])
    assert (refused.value.status, refused.value.detail) == (
        422, f"'{bad.strip()}' is not an e-mail address such as info@example-dental.jp")
    assert _stored(ctx, c) == ["incho@example-dental.jp"]


def test_the_longest_address_is_accepted(ctx: Context) -> None:
    c = create_contract(ctx, "連絡先歯科", 100).id
    longest = "a" * 243 + "@example.jp"  # 254 characters
    assert contacts.set_contacts(ctx, c, [longest]) == [longest]


def test_an_unknown_contract_is_refused(ctx: Context) -> None:
    missing = uuid.uuid4()
    with pytest.raises(Problem) as refused:
        contacts.set_contacts(ctx, missing, ["incho@example-dental.jp"])
    assert (refused.value.status, refused.value.detail) == (404, f"no contract {missing}")
