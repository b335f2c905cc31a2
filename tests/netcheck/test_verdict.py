"""The verdict's rules (netcheck/verdict.py, docs/netcheck.md): figures in, a verdict and advice out."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime

from chairside.domain.calendar import CLINIC_TZ
from chairside.netcheck.verdict import Figures, Need, judge
from chairside.relay.bandwidth import parse_schedule, rate_at

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
GOOD = Figures(upload_mbps=80.0, download_mbps=200.0, rtt_ms=12.0, jitter_ms=1.0, retransmit_percent=0.05,
               loaded_rtt_ms=30.0, longest_dropout_s=0.0, ping_loss_percent=0.0, on_wifi=False)


def test_the_requirement_is_chairs_times_hours_of_15_mbit_video_over_the_night_with_headroom() -> None:
    need = Need(chairs=4, hours_per_day=3, night_hours=10)
    assert need.upload_mbps == 4 * 3 * 15 / 10 * 1.5  # 27 Mbit/s
    assert round(need.daily_gb) == 81  # 12 h of 15 Mbit/s


def test_a_good_wired_line_qualifies_and_still_gets_a_daytime_schedule_for_the_relay() -> None:
    v = judge(GOOD, Need(chairs=3, hours_per_day=4))
    assert v.ok and v.stable and v.reasons == []
    [schedule] = [a for a in v.advice if "CHAIRSIDE_RELAY_BANDWIDTH" in a]
    setting = re.search(r"CHAIRSIDE_RELAY_BANDWIDTH='([^']+)'", schedule)
    assert setting is not None
    rules = parse_schedule(setting.group(1))  # the relay's own parser accepts it
    assert rate_at(rules, datetime(2026, 12, 7, 10, 0, tzinfo=CLINIC_TZ)) == 24e6  # a Monday morning: 30 % of 80 Mbit/s
    assert rate_at(rules, datetime(2026, 12, 7, 23, 0, tzinfo=CLINIC_TZ)) is None  # the night: unlimited
    assert not any("LAN" in a for a in v.advice)  # wired and clean: nothing to say about Wi-Fi


def test_a_slow_upload_fails_with_the_figures_and_asks_for_a_faster_plan() -> None:
    slow = dataclasses.replace(GOOD, upload_mbps=8.0)
    v = judge(slow, Need(chairs=4, hours_per_day=3))
    assert not v.ok and v.stable
    assert len(v.reasons) == 1 and "8.0" in v.reasons[0] and "27.0" in v.reasons[0]
    assert any("faster plan" in a and "27 Mbit/s" in a for a in v.advice)
    assert any("1 chairs" in a for a in v.advice)  # what the line carries today


def test_just_enough_upload_qualifies_and_just_below_does_not() -> None:
    need = Need(chairs=2, hours_per_day=2)  # 9 Mbit/s
    assert judge(dataclasses.replace(GOOD, upload_mbps=9.0), need).ok
    assert not judge(dataclasses.replace(GOOD, upload_mbps=8.99), need).ok


def test_a_lossy_line_on_wifi_is_told_to_use_a_cable_and_business_wifi_not_a_faster_plan() -> None:
    lossy = dataclasses.replace(GOOD, upload_mbps=5.0, retransmit_percent=4.0, jitter_ms=25.0, on_wifi=True)
    v = judge(lossy, Need())
    assert not v.ok
    assert any("LAN cable" in a for a in v.advice)
    assert any("business-grade Wi-Fi" in a for a in v.advice)
    assert not any("faster plan" in a for a in v.advice)  # a faster plan does not cure a lossy Wi-Fi


def test_a_dropout_makes_the_line_unstable_whatever_its_speed() -> None:
    v = judge(dataclasses.replace(GOOD, longest_dropout_s=10.0, ping_loss_percent=4.0), Need())
    assert not v.ok and not v.stable
    assert any("unstable" in r and "10 s" in r for r in v.reasons)
    assert any("ONU" in a for a in v.advice)
    short = judge(dataclasses.replace(GOOD, longest_dropout_s=1.0, ping_loss_percent=1.0), Need())
    assert short.ok and short.stable  # one lost ping is not an outage


def test_a_slow_download_fails_and_bufferbloat_and_a_long_round_trip_are_advised() -> None:
    v = judge(dataclasses.replace(GOOD, download_mbps=10.0, rtt_ms=150.0, loaded_rtt_ms=400.0), Need())
    assert not v.ok and any("download" in r for r in v.reasons)
    assert any("bufferbloat" in a for a in v.advice)
    assert any("round trip to the cloud (150 ms)" in a for a in v.advice)


def test_every_sentence_is_japanese_first_then_english() -> None:
    v = judge(Figures(1.0, 1.0, 300.0, 30.0, 9.0, 900.0, 20.0, 50.0, True), Need())
    for sentence in v.reasons + v.advice:
        ja, sep, en = sentence.partition(" / ")
        assert sep and JAPANESE.search(ja) and not JAPANESE.search(en), sentence


def test_retransmissions_at_full_rate_are_advice_not_a_failure() -> None:
    """A kernel tbf at 10 Mbit/s with a small queue: full rate delivered, 27 % resent (bench/netcheck.py)."""
    v = judge(dataclasses.replace(GOOD, upload_mbps=9.8, download_mbps=20.0, retransmit_percent=27.4), Need())
    assert v.ok and v.reasons == []
    assert any("27.4% of what was sent had to be sent again" in a for a in v.advice)
    assert any("LAN cable" in a for a in v.advice)
