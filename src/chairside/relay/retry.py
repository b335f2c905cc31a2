"""How the uploader judges an op that did not go through: retried later, or refused for good.

Failures. A refusal for good (409 media-id-conflict, 413, 415, 422, other 4xx) marks the op
failed, with the cloud's message, shown in the relay's status and never retried by itself.
Cuts, timeouts (read timeouts end a silent stall), 401, 404 of a not-yet-known patient, 408,
423, 429, 460 and 5xx are retried with exponential backoff capped at 60 s, for ever. (How a
transfer resumes after a cut or waits out a busy upload: relay/sender.py.)
"""

from __future__ import annotations

import contextlib
from typing import NoReturn

import httpx

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 60.0
RETRY_STATUS = frozenset({401, 404, 408, 423, 425, 429, 460})


class Retry(Exception):
    """Try this op again later (with backoff)."""

    def __init__(self, why: str, *, transport: bool = False) -> None:
        super().__init__(why)
        self.transport = transport


class Refused(Exception):
    """The cloud refused this op for good: it is marked failed and kept for a person to look at."""


def backoff_s(attempts: int) -> float:
    """Wait before try number `attempts` + 1: 0.25 s, 0.5 s, 1 s … capped at 60 s."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2.0 ** min(attempts - 1, 20))


def io_timeout(offline_after_s: float) -> float:
    """Seconds without progress on a request before it is abandoned (then resumed): half the time
    after which the relay shows as offline, within 10 to 60 s (longer than the cloud makes a PATCH
    wait for a busy upload before it answers 423)."""
    return max(10.0, min(60.0, offline_after_s / 2))


def problem_text(response: httpx.Response) -> str:
    """The cloud's message for a status: problem+json detail when there is one."""
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or "")
            if body.get("code"):
                detail = f"{detail} ({body['code']})"
    return f"the cloud answered {response.status_code}: {detail or response.reason_phrase}"[:1000]


def problem_code(response: httpx.Response) -> str:
    """The problem+json `code` of an answer, or ""."""
    with contextlib.suppress(ValueError, AttributeError):
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("code") or "")
    return ""


def judge(response: httpx.Response, why: str | None = None) -> NoReturn:
    """Raise Retry or Refused for an answer that is not a success; `why` says so (the cloud's message by
    default)."""
    if why is None:
        why = problem_text(response)
    if response.status_code in RETRY_STATUS or response.status_code >= 500:
        raise Retry(why)
    raise Refused(why)
