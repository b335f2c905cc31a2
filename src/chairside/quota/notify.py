"""Notices by e-mail: the handler of `notice-mail` jobs, and the worker every server process runs.

The notice and its job are committed with the counter change that crossed the
threshold (chairside.quota.usage); this module only sends. Any number of workers share the
jobs (chairside.jobs.queue); an SMTP failure is retried later with a growing delay and never
touches an upload. Each e-mail's Message-ID is derived from the notice, so the rare
second delivery (a worker dying between the server's acceptance and marking the job
done) is the same message to the recipient's mail client.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import anyio

from chairside.context import Context
from chairside.db.models import Contract, Notice
from chairside.domain.calendar import CLINIC_TZ
from chairside.jobs import queue
from chairside.quota import usage
from chairside.settings import Settings

log = logging.getLogger(__name__)


def policy(settings: Settings) -> queue.Policy:
    return queue.Policy(lease_s=settings.job_lease_s, retry_base_s=settings.job_retry_base_s,
                       max_attempts=settings.job_max_attempts)


def compose(notice: Notice, contract: Contract, settings: Settings, recipients: list[str]) -> EmailMessage:
    """The e-mail for a notice: Japanese first, then English; figures as at the crossing."""
    used = f"{usage.used_hours(notice.used_ms):.2f}"
    p, plan = notice.threshold_percent, notice.plan_hours
    when = notice.created_at.astimezone(CLINIC_TZ)
    title, message = usage.notice_text(notice, contract.name)
    ja = [
        f"{contract.name} ご担当者様",
        "",
        f"保存されている動画の合計時間が、ご契約プラン（{plan} 時間）の {p}% に達しました。",
        f"現在の保存時間: {used} 時間（{when:%Y-%m-%d %H:%M} 時点）",
    ]
    if p >= 100:
        ja.append("新しい動画は保存できません。アップロード中の録画は最後まで保存され、写真はいつでも保存できます。")
    ja += [
        "",
        "空きを作るには、次のいずれかをお願いします。",
        "  1. 契約管理者の方がビューアからプランの追加（100 時間単位）を申請する",
        "  2. 不要な動画をエクスポートしてから削除し、ごみ箱を空にする",
        "     （ごみ箱の動画は完全に削除されるまで保存時間に含まれます）",
    ]
    body = "\n".join([*ja, "", "-" * 40, "", title + ".", "", message, ""])
    msg = EmailMessage()
    msg["Subject"] = f"[Chairside] 動画の保存時間がプランの {p}% に達しました / {title}"
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(notice.created_at)
    domain = parseaddr(settings.smtp_from)[1].rpartition("@")[2] or "chairside.invalid"
    msg["Message-ID"] = f"<notice-{notice.id}@{domain}>"
    msg["X-Chairside-Notice"] = str(notice.id)
    msg.set_content(body)
    return msg


def send(settings: Settings, msg: EmailMessage) -> None:
    """Hand the message to the configured SMTP server; any error raises (the job is retried)."""
    if not settings.smtp_host:
        raise RuntimeError("no SMTP server is configured (smtp_host)")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_tls == "tls":
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s,
                                context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s)
    with smtp:
        if settings.smtp_tls == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        refused = smtp.send_message(msg)
    if refused:
        log.warning("notice e-mail %s refused for %s", msg["Message-ID"], sorted(refused))


def deliver(ctx: Context, job: queue.Claimed) -> str:
    """The `notice-mail` handler: e-mail the notice to the contract's contacts."""
    with ctx.db.session() as s:
        notice = s.get(Notice, uuid.UUID(job.payload["notice_id"]))
        contract = s.get(Contract, notice.contract_id) if notice else None
        if notice is None or contract is None:
            return "skipped: the notice no longer exists"
        recipients = [a for a in (contract.contact_emails or []) if a]
    if not recipients:
        return "skipped: the contract has no contact address"
    send(ctx.settings, compose(notice, contract, ctx.settings, recipients))
    return f"sent to {len(recipients)}"


def drain(ctx: Context, limit: int = 20) -> int:
    """Send the e-mails that are due (one batch); answer how many jobs were run."""
    return queue.run_due(ctx.db, {usage.NOTICE_MAIL: lambda job: deliver(ctx, job)}, policy(ctx.settings),
                        limit=limit)


async def mailer(ctx: Context) -> None:
    """Run in the app's lifespan: send due notice e-mails every `mail_poll_interval_s`. Idle without SMTP."""
    if not ctx.settings.smtp_host:
        return
    while True:
        try:
            while await anyio.to_thread.run_sync(drain, ctx) > 0:
                pass
        except Exception:  # the database is away for a moment: try again at the next tick
            log.exception("could not send notice e-mails; trying again in %s s", ctx.settings.mail_poll_interval_s)
        await asyncio.sleep(ctx.settings.mail_poll_interval_s)
