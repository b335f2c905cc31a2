"""Backups never fail silently: a failed or missed generation raises a notice to the operator.

A backup notice concerns the whole site, not one contract, so it is not a row of the ``notices`` table
(which counts a contract's quota crossings): it is a line appended (and fsynced) to
``DATA_DIR/backup/notices.jsonl``, an ERROR in the log, and, when ``backup_notify_to`` and ``smtp_host``
are set, an e-mail sent through the same SMTP path as the quota notices (``quota.notify.send``).
The e-mail is best effort: the notice file and the command's non-zero exit status remain.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from chairside.quota.notify import send
from chairside.settings import Settings

__all__ = ["NOTICE_FILE", "notices_file", "raise_notice", "read_notices"]

log = logging.getLogger("chairside.backup")

NOTICE_FILE = "notices.jsonl"

_TITLES = {
    "failed": ("バックアップに失敗しました", "a backup failed"),
    "missed": ("バックアップが予定どおり取られていません", "a backup is overdue"),
    "incomplete": ("バックアップに含められなかったデータがあります", "a backup is missing data"),
    "verify": ("バックアップの検証で不一致が見つかりました", "a backup failed verification"),
    "drill": ("復元訓練に失敗しました", "a restore drill failed"),
}


def notices_file(settings: Settings) -> Path:
    return settings.data_dir / "backup" / NOTICE_FILE


def raise_notice(settings: Settings, kind: str, target: str, detail: str) -> dict[str, Any]:
    """Record the notice, log it, and e-mail it when an operator address is configured."""
    ja, en = _TITLES.get(kind, ("バックアップの通知", "a backup notice"))
    notice = {"at": datetime.now(UTC).isoformat(), "kind": kind, "target": target, "title": f"{ja} / {en}",
              "detail": detail}
    path = notices_file(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(notice, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:  # a full disk must not hide the notice: the log and the e-mail still carry it
        log.error("could not record the backup notice in %s: %s", path, exc)
    log.error("backup notice (%s) for %s: %s", kind, target, detail)
    if settings.backup_notify_to and settings.smtp_host:
        try:
            send(settings, _compose(settings, notice))
        except Exception as exc:
            log.error("backup notice e-mail to %s failed: %s", settings.backup_notify_to, exc)
    return notice


def _compose(settings: Settings, notice: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[Chairside] {notice['title']}"
    msg["From"] = settings.smtp_from
    msg["To"] = settings.backup_notify_to or ""
    ja, en = notice["title"].split(" / ", 1)
    msg.set_content("\n".join([
        f"{ja}。", f"バックアップ先: {notice['target']}", f"日時 (UTC): {notice['at']}", "", notice["detail"], "",
        "対処: docs/backups.md の「通知が来たら」をご覧ください。", "", "-" * 40, "",
        f"{en[0].upper()}{en[1:]}.", f"Target: {notice['target']}", f"At (UTC): {notice['at']}", "", notice["detail"],
        "", "What to do: see 'When a notice arrives' in docs/backups.md.", "",
    ]))
    return msg


def read_notices(settings: Settings) -> list[dict[str, Any]]:
    path = notices_file(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
