"""The relay uploader's judgement of a failed op (relay/retry.py), pinned value by value: which statuses are
retried and which refused for good, the backoff series and its cap, the I/O timeout's bounds, and the cloud's
message as the relay's status page shows it.

Written for the survivors of a mutmut run over relay/retry.py (docs/testing.md, "Mutation testing"): the
uploader tests drive `judge` through a real relay, but only with a few statuses and never look at the exact
backoff, timeout or message text.
"""

from __future__ import annotations

import json

import httpx
import pytest

from chairside.relay import retry


def _answer(status: int, body: object | None = None, *, raw: bytes | None = None) -> httpx.Response:
    if raw is not None:
        return httpx.Response(status, content=raw)
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/problem+json"})


@pytest.mark.parametrize("status", [401, 404, 408, 423, 425, 429, 460, 500, 502, 503, 504, 599])
def test_cuts_busy_and_not_yet_known_answers_are_retried(status: int) -> None:
    with pytest.raises(retry.Retry) as caught:
        retry.judge(_answer(status, {"detail": "wait", "code": "busy"}))
    assert str(caught.value) == f"the cloud answered {status}: wait (busy)"
    assert caught.value.transport is False


@pytest.mark.parametrize("status", [400, 403, 405, 409, 410, 411, 412, 413, 415, 422, 428, 431, 451, 499])
def test_other_refusals_are_for_good(status: int) -> None:
    with pytest.raises(retry.Refused) as caught:
        retry.judge(_answer(status, {"detail": "no", "code": "media-id-conflict"}))
    assert str(caught.value) == f"the cloud answered {status}: no (media-id-conflict)"
    assert not isinstance(caught.value, retry.Retry)


def test_the_reason_given_by_the_caller_replaces_the_clouds_message() -> None:
    with pytest.raises(retry.Refused, match=r"^the upload is gone$"):
        retry.judge(_answer(410, {"detail": "Gone"}), "the upload is gone")
    with pytest.raises(retry.Retry, match=r"^busy for now$"):
        retry.judge(_answer(423, {"detail": "Locked"}), "busy for now")
    assert retry.Retry("cut", transport=True).transport is True


def test_the_backoff_doubles_from_a_quarter_second_and_stops_at_a_minute() -> None:
    assert retry.backoff_s(-3) == 0.0
    assert retry.backoff_s(0) == 0.0
    assert [retry.backoff_s(n) for n in range(1, 10)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert retry.backoff_s(21) == 60.0
    assert retry.backoff_s(10_000) == 60.0  # the exponent is capped: no OverflowError after days of retries


def test_the_io_timeout_is_half_the_offline_time_within_ten_and_sixty_seconds() -> None:
    assert retry.io_timeout(0) == 10.0
    assert retry.io_timeout(20.0) == 10.0
    assert retry.io_timeout(21.0) == 10.5
    assert retry.io_timeout(50.0) == 25.0
    assert retry.io_timeout(120.0) == 60.0
    assert retry.io_timeout(1000.0) == 60.0


def test_the_clouds_message_is_its_detail_else_its_title_else_the_reason_phrase() -> None:
    assert retry.problem_text(_answer(422, {"title": "Bad", "detail": "Too big", "code": "x"})) == \
        "the cloud answered 422: Too big (x)"
    assert retry.problem_text(_answer(422, {"title": "Unprocessable"})) == "the cloud answered 422: Unprocessable"
    assert retry.problem_text(_answer(413, {"detail": "", "title": ""})) == \
        "the cloud answered 413: Request Entity Too Large"
    assert retry.problem_text(_answer(502, raw=b"<html>Bad Gateway</html>")) == "the cloud answered 502: Bad Gateway"
    assert retry.problem_text(_answer(500, ["not", "a", "problem"])) == \
        "the cloud answered 500: Internal Server Error"


def test_the_clouds_message_is_cut_at_a_thousand_characters() -> None:
    text = retry.problem_text(_answer(422, {"detail": "歯" * 5000}))
    assert len(text) == 1000 and text.startswith("the cloud answered 422: 歯")


def test_the_problem_code_is_read_only_from_a_problem_object() -> None:
    assert retry.problem_code(_answer(409, {"code": "media-id-conflict", "detail": "x"})) == "media-id-conflict"
    assert retry.problem_code(_answer(409, {"detail": "x"})) == ""
    assert retry.problem_code(_answer(409, {"code": None})) == ""
    assert retry.problem_code(_answer(409, ["code"])) == ""
    assert retry.problem_code(_answer(502, raw=b"not json")) == ""


def test_the_retried_statuses_are_exactly_the_documented_ones() -> None:
    assert frozenset({401, 404, 408, 423, 425, 429, 460}) == retry.RETRY_STATUS
    assert (retry.BACKOFF_FIRST_S, retry.BACKOFF_CAP_S) == (0.25, 60.0)
