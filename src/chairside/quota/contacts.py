"""A contract's contacts: the addresses its notices are e-mailed to (`contracts.contact_emails`).

Set by the operator; read by the notice mailer (quota/notify.py). Each address is checked here,
deliberately simply: one address, no spaces, commas or line breaks (which could forge e-mail
headers). Duplicates are dropped, the first order kept; an empty list clears the contacts.

Refusals are `Problem`s whose `detail` is the operator's message (the CLI prints it after `error:`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from chairside.context import Context
from chairside.db.models import Contract
from chairside.errors import Problem

_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")
_MAX_LENGTH = 254  # RFC 5321's limit on a forward path


def check_address(address: str) -> str:
    """The address without surrounding blanks, or a 422 `Problem` saying it is not one."""
    address = address.strip()
    if not _EMAIL.fullmatch(address) or len(address) > _MAX_LENGTH:
        raise Problem(422, f"'{address}' is not an e-mail address such as info@example-dental.jp", code="bad-email")
    return address


def set_contacts(ctx: Context, contract_id: uuid.UUID, addresses: Iterable[str]) -> list[str]:
    """Replace the contract's contacts with `addresses` (checked, duplicates dropped); answers the list stored."""
    checked = list(dict.fromkeys(check_address(a) for a in addresses))
    with ctx.db.session() as s:
        row = s.get(Contract, contract_id)
        if row is None:
            raise Problem(404, f"no contract {contract_id}", code="contract-not-found")
        row.contact_emails = checked
        return checked
