"""Notices by e-mail through a real SMTP server on loopback (aiosmtpd): sent once, retried, never in the way."""

from __future__ import annotations

import dataclasses
import email
import email.header
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from chairside.client import Client
from chairside.context import Context
from chairside.db.models import Contract, Job, Media
from chairside.quota import notify, usage
from tests.admin_cli import run_admin
from tests.conftest import LiveServer, free_port
from tests.factories import Tenant, make_tenant
from tests.quota.helpers import HOUR_MS, set_counter


class Inbox:
    """An SMTP server's handler that keeps what it accepts; it can refuse the first few tries."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 Try again later"
            msg = email.message_from_bytes(envelope.content)
            msg["X-Test-Rcpt"] = ",".join(envelope.rcpt_tos)
            self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def _mail_settings(ctx: Context, port: int) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none",
                                       smtp_from="Chairside <noreply@chairside.example>",
                                       mail_poll_interval_s=0.05, job_retry_base_s=0.05, smtp_timeout_s=5)


@pytest.fixture
def mail_ctx(ctx: Context, inbox: tuple[Inbox, int]) -> Context:
    _mail_settings(ctx, inbox[1])
    return ctx


def _contacts(ctx: Context, contract_id: uuid.UUID, *addresses: str) -> None:
    with ctx.db.session() as s:
        s.execute(update(Contract).where(Contract.id == contract_id).values(contact_emails=list(addresses)))


def _cross(ctx: Context, contract_id: uuid.UUID, percent: int = 80) -> None:
    set_counter(ctx, contract_id, percent * HOUR_MS - 1)
    with ctx.db.session() as s:
        item = Media(id=uuid.uuid4(), contract_id=contract_id, kind="video", duration_s=1.0, source="station")
        usage.count_video(s, item, percents=ctx.settings.quota_notice_percents)


def _wait(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _job(ctx: Context) -> Job:
    with ctx.db.read() as s:
        return s.scalars(select(Job)).one()


def _drain_all(ctx: Context) -> None:
    while notify.drain(ctx):
        pass


def test_a_crossing_is_emailed_once_to_the_contracts_contacts(
    mail_ctx: Context, inbox: tuple[Inbox, int], tenant: Tenant
) -> None:
    ctx, (box, _) = mail_ctx, inbox
    out = run_admin(ctx, "contract", "set-contacts", "--contract", str(tenant.contract_id),
                    "--email", "incho@example-dental.jp", "--email", "uketsuke@example-dental.jp")
    assert out.exit_code == 0, out.stderr
    _cross(ctx, tenant.contract_id, 80)
    _drain_all(ctx)
    _drain_all(ctx)
    [msg] = box.messages
    assert msg["X-Test-Rcpt"] == "incho@example-dental.jp,uketsuke@example-dental.jp"
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert "80%" in subject and "[Chairside]" in subject
    assert msg["Message-ID"].startswith("<notice-") and msg["Message-ID"].endswith("@chairside.example>")
    body = msg.get_payload(decode=True).decode()
    assert "80% に達しました" in body and "100 more hours" in body and "80.01 時間" in body


def test_contact_addresses_are_checked(ctx: Context, tenant: Tenant) -> None:
    for bad in ("not-an-address", "a@b.jp\nBcc: everyone@example.com", "a@b.jp, c@d.jp"):
        out = run_admin(ctx, "contract", "set-contacts", "--contract", str(tenant.contract_id), "--email", bad)
        assert out.exit_code == 2 and "is not an e-mail address" in out.stderr


def test_an_smtp_refusal_is_retried_until_it_goes_through(
    mail_ctx: Context, inbox: tuple[Inbox, int], tenant: Tenant
) -> None:
    ctx, (box, _) = mail_ctx, inbox
    box.refuse = 2
    _contacts(ctx, tenant.contract_id, "incho@example-dental.jp")
    _cross(ctx, tenant.contract_id)
    _wait(lambda: (_drain_all(ctx), len(box.messages))[1] == 1)
    with ctx.db.session() as s:
        job = s.scalars(select(Job)).one()
        assert job.attempts == 3 and job.done_at is not None and "451" in (job.last_error or "")
    time.sleep(0.3)
    _drain_all(ctx)
    assert len(box.messages) == 1


def test_a_contract_without_contacts_gets_its_notice_but_no_email(
    mail_ctx: Context, inbox: tuple[Inbox, int], tenant: Tenant
) -> None:
    _cross(mail_ctx, tenant.contract_id)
    _drain_all(mail_ctx)
    assert inbox[0].messages == []
    with mail_ctx.db.session() as s:
        assert (s.scalars(select(Job)).one().result or "").startswith("skipped")


def test_several_workers_send_each_notice_exactly_once(mail_ctx: Context, inbox: tuple[Inbox, int]) -> None:
    ctx, (box, _) = mail_ctx, inbox
    tenants = [make_tenant(ctx, name=f"歯科 {i}", clinics=1) for i in range(8)]
    for t in tenants:
        _contacts(ctx, t.contract_id, f"k{t.contract_id.hex[:6]}@example-dental.jp")
        for percent in (80, 90, 95):
            _cross(ctx, t.contract_id, percent)
    workers = [threading.Thread(target=_drain_all, args=(ctx,)) for _ in range(5)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ids = [m["Message-ID"] for m in box.messages]
    assert len(ids) == 8 * 3 and len(set(ids)) == len(ids)


def test_with_the_mail_server_down_uploads_go_on_and_the_notice_is_sent_once_it_is_back(
    ctx: Context, tenant: Tenant, patient_in: Callable[[LiveServer], dict[str, Any]], media_dir: Path
) -> None:
    port = free_port()  # nothing listens here yet
    _mail_settings(ctx, port)
    _contacts(ctx, tenant.contract_id, "incho@example-dental.jp")
    set_counter(ctx, tenant.contract_id, 80 * HOUR_MS - 500)
    with LiveServer(ctx) as server, Client(server.url, tenant.token) as api:
        item = api.upload(media_dir / "clip.mp4", patient_in(server)["id"])  # crosses 80 % while mail is down
        assert item["kind"] == "video"
        _wait(lambda: _job(ctx).attempts >= 2)  # tried, and tried again
        assert "refused" in (_job(ctx).last_error or "").lower()
        headers = {"Authorization": f"Bearer {tenant.token}"}
        assert httpx.get(f"{server.url}/api/v1/notices", headers=headers).json()["items"][0]["email"] == "pending"
        box = Inbox()
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            _wait(lambda: len(box.messages) == 1)  # the server's own background worker sent it
            _wait(lambda: httpx.get(f"{server.url}/api/v1/notices", headers=headers)
                  .json()["items"][0]["email"] == "sent")
        finally:
            controller.stop()
    assert len(box.messages) == 1


@pytest.fixture
def patient_in(tenant: Tenant) -> Callable[[LiveServer], dict[str, Any]]:
    def make(server: LiveServer) -> dict[str, Any]:
        with Client(server.url, tenant.token) as api:
            return api.create_patient(tenant.clinic_ids[0], "00001", "山田 太郎", "ヤマダ タロウ")
    return make
