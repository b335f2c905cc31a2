"""The video quota (quota/usage.py) called directly on a real database, value by value: the counter's
before and after, the day's rows, the refusal at the limit and its text, the notices and their e-mail jobs,
which uploads announce a video, the figures a station sees and the forecast's window.

Written for a mutmut run over quota/usage.py (docs/testing.md, "Mutation testing"): the first run selected
only tests/quota/test_counting.py, so the limit, the notices' text, the forecast and the figures had no
covering test in it; the tests that own them go through a real server and check a few values each.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from chairside.context import Context
from chairside.db.models import Change, Job, Media, Notice, QuotaDaily
from chairside.domain.calendar import japan_day
from chairside.errors import Problem
from chairside.quota import usage
from tests.factories import Tenant, make_contract, make_patient, make_tenant
from tests.quota.helpers import HOUR_MS, counter, set_counter

PLAN_MS = 100 * HOUR_MS
NOW = datetime(2026, 6, 14, 16, 30, tzinfo=UTC)  # already 15 June in Japan (01:30)
TODAY = date(2026, 6, 15)
WAYS_OUT = ("Photos can still be saved. To record videos again, either (1) ask for a larger plan (the contract's "
            "administrator can ask for 100 more hours at a time), or (2) export the videos you no longer need and "
            "delete them, then empty the trash (videos in the trash count until they are purged).")


def _video(contract_id: uuid.UUID, ms: int, source: str = "station") -> Media:
    return Media(id=uuid.uuid4(), contract_id=contract_id, kind="video", duration_s=ms / 1000, source=source)


def _days(ctx: Context, contract_id: uuid.UUID) -> dict[date, tuple[int, int]]:
    with ctx.db.session() as s:
        rows = s.scalars(select(QuotaDaily).where(QuotaDaily.contract_id == contract_id))
        return {r.day: (r.recorded_ms, r.freed_ms) for r in rows}


def _put_days(ctx: Context, contract_id: uuid.UUID, rows: dict[date, tuple[int, int]]) -> None:
    with ctx.db.session() as s:
        for day, (recorded, freed) in rows.items():
            s.add(QuotaDaily(contract_id=contract_id, day=day, recorded_ms=recorded, freed_ms=freed))


def _contract_events(ctx: Context, contract_id: uuid.UUID) -> list[int]:
    """The stored_video_ms each `contract` feed event of the contract carried, oldest first."""
    with ctx.db.session() as s:
        rows = s.scalars(select(Change).where(Change.contract_id == contract_id, Change.kind == "contract")
                         .order_by(Change.seq))
        return [r.body["stored_video_ms"] for r in rows if r.entity_id == contract_id]


def _refusal(call: object, *args: object, **kwargs: object) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


# --- figures --------------------------------------------------------------------------------------


def test_hours_are_shown_rounded_up_to_hundredths_without_trailing_zeros() -> None:
    assert usage.plan_ms(3) == 3 * 3_600_000 == usage.plan_ms(1) * 3
    assert usage.hours(5_400_000) == Decimal("1.5")
    assert usage.used_hours(0) == Decimal("0.00")
    assert usage.used_hours(1) == Decimal("0.01")
    assert usage.used_hours(36_000) == Decimal("0.01")
    assert usage.used_hours(36_001) == Decimal("0.02")
    assert usage.used_hours(PLAN_MS - 1) == Decimal("100.00")  # 99.9999997 h never reads as 99.99
    texts = {ms: usage._hours_text(usage.used_hours(ms)) for ms in (0, 1, PLAN_MS, PLAN_MS + HOUR_MS // 2,
                                                                    241 * HOUR_MS + 1_368_000)}
    assert texts == {0: "0", 1: "0.01", PLAN_MS: "100", PLAN_MS + HOUR_MS // 2: "100.5",
                     241 * HOUR_MS + 1_368_000: "241.38"}


@pytest.mark.parametrize(("seconds", "ms"), [(float("inf"), 0), (float("-inf"), 0), (-1.0, 0), (0.0, 0),
                                             (0.0005, 1), (3600.0, HOUR_MS)])
def test_no_duration_counts_as_nothing(seconds: float, ms: int) -> None:
    assert usage.video_ms(seconds) == ms


def test_the_limit_is_reached_at_the_plan_exactly() -> None:
    assert usage.Move(PLAN_MS, PLAN_MS + 5, 100).was_at_limit
    assert usage.Move(PLAN_MS + 1, 0, 100).was_at_limit
    assert not usage.Move(PLAN_MS - 1, PLAN_MS + 5, 100).was_at_limit


def test_what_a_station_sees_remaining_rounded_down_percent_to_a_tenth_rounded_down() -> None:
    q = usage.Quota(100, 80 * HOUR_MS - 1, None)
    assert (q.used_hours, q.remaining_hours, q.percent) == (Decimal("80.00"), Decimal("20.00"), Decimal("79.9"))
    assert q.as_json() == {"plan_hours": 100, "used_hours": 80.0, "remaining_hours": 20.0, "percent": 79.9,
                           "forecast_full_on": None}
    q = usage.Quota(300, 80 * HOUR_MS + 1, date(2027, 1, 2))
    assert q.as_json() == {"plan_hours": 300, "used_hours": 80.01, "remaining_hours": 219.99, "percent": 26.6,
                           "forecast_full_on": "2027-01-02"}
    assert usage.Quota(100, 1, None).remaining_hours == Decimal("99.99")
    assert usage.Quota(100, 80 * HOUR_MS, None).percent == Decimal("80.0")
    over = usage.Quota(100, PLAN_MS + 1, TODAY)
    assert (over.remaining_hours, over.as_json()["remaining_hours"], over.percent) == (
        Decimal("0.00"), 0.0, Decimal("100.0"))


# --- the counter ----------------------------------------------------------------------------------


def test_add_moves_one_contracts_counter_and_answers_before_and_after(ctx: Context) -> None:
    ours, theirs = make_contract(ctx, "ours", 200), make_contract(ctx, "theirs", 100)
    set_counter(ctx, ours, 5000)
    with ctx.db.session() as s:
        assert usage._add(s, ours, 1234) == usage.Move(5000, 6234, 200)
    with ctx.db.session() as s:
        assert usage._add(s, ours, -234) == usage.Move(6234, 6000, 200)
    assert (counter(ctx, ours), counter(ctx, theirs)) == (6000, 0)


def test_the_days_rows_add_up_per_contract_and_day(ctx: Context) -> None:
    ours, theirs = make_contract(ctx, "ours"), make_contract(ctx, "theirs")
    day, next_day = date(2026, 6, 15), date(2026, 6, 16)
    with ctx.db.session() as s:
        usage._daily(s, ours, day, recorded_ms=1000)
        usage._daily(s, ours, day, recorded_ms=500)
        usage._daily(s, ours, day, freed_ms=300)
        usage._daily(s, ours, day, freed_ms=20)
        usage._daily(s, ours, next_day, freed_ms=7)
        usage._daily(s, theirs, day, recorded_ms=9)
    assert _days(ctx, ours) == {day: (1500, 320), next_day: (0, 7)}
    assert _days(ctx, theirs) == {day: (9, 0)}


def test_a_counted_video_moves_the_counter_the_day_the_notices_and_the_feed(ctx: Context) -> None:
    c = make_contract(ctx, "ours", 100)
    set_counter(ctx, c, 80 * HOUR_MS - 1000)
    before_events = len(_contract_events(ctx, c))
    with ctx.db.session() as s:
        move = usage.count_video(s, _video(c, 2500), percents=(50, 80, 90), now=NOW)
    assert move == usage.Move(80 * HOUR_MS - 1000, 80 * HOUR_MS + 1500, 100)
    assert counter(ctx, c) == 80 * HOUR_MS + 1500
    assert _days(ctx, c) == {TODAY: (2500, 0)}  # the day in Japan at `now`
    with ctx.db.session() as s:
        [notice] = s.scalars(select(Notice).where(Notice.contract_id == c)).all()
        assert (notice.threshold_percent, notice.crossing, notice.used_ms, notice.plan_hours, notice.created_at) == (
            80, 1, 80 * HOUR_MS + 1500, 100, NOW)
    assert _contract_events(ctx, c)[before_events:] == [80 * HOUR_MS + 1500]


def test_an_import_counts_without_a_day_row_and_with_the_default_thresholds(ctx: Context) -> None:
    c = make_contract(ctx, "ours", 100)
    set_counter(ctx, c, 95 * HOUR_MS - 1)
    with ctx.db.session() as s:
        usage.count_video(s, _video(c, 1, source="migration"))
    assert counter(ctx, c) == 95 * HOUR_MS and _days(ctx, c) == {}
    with ctx.db.session() as s:
        assert [n.threshold_percent for n in s.scalars(select(Notice).where(Notice.contract_id == c))] == [95]
        [notice] = s.scalars(select(Notice)).all()
        assert notice.created_at > NOW  # now by default


def test_a_video_created_at_the_limit_is_refused_only_if_still_at_it(ctx: Context) -> None:
    c = make_contract(ctx, "ours", 100)
    set_counter(ctx, c, PLAN_MS)
    with ctx.db.session() as s:
        usage.count_video(s, _video(c, 1000), now=NOW)  # begun below the limit (the default): counted in full
    assert counter(ctx, c) == PLAN_MS + 1000
    problem = _refusal(lambda: _count(ctx, c, 2000, created_over_limit=True))
    assert (problem.status, problem.code, problem.extra["used_hours"], problem.extra["plan_hours"]) == (
        403, "video-quota-full", 100.01, 100)  # the figures before this video
    assert counter(ctx, c) == PLAN_MS + 1000 and _days(ctx, c) == {TODAY: (1000, 0)}  # rolled back
    set_counter(ctx, c, PLAN_MS - 1)
    assert _count(ctx, c, 2000, created_over_limit=True) == usage.Move(PLAN_MS - 1, PLAN_MS + 1999, 100)


def _count(ctx: Context, contract_id: uuid.UUID, ms: int, *, created_over_limit: bool) -> usage.Move:
    with ctx.db.session() as s:
        return usage.count_video(s, _video(contract_id, ms), created_over_limit=created_over_limit, now=NOW)


def test_a_purged_video_frees_its_hours_on_its_day(ctx: Context) -> None:
    c = make_contract(ctx, "ours", 200)
    set_counter(ctx, c, 10_000)
    before_events = len(_contract_events(ctx, c))
    with ctx.db.session() as s:
        assert usage.uncount_video(s, _video(c, 4000), now=NOW) == usage.Move(10_000, 6000, 200)
    assert counter(ctx, c) == 6000
    assert _days(ctx, c) == {TODAY: (0, 4000)}
    assert _contract_events(ctx, c)[before_events:] == [6000]
    with ctx.db.session() as s:
        usage.uncount_video(s, _video(c, 1000))  # today, by default
    today = japan_day(datetime.now(UTC))
    assert _days(ctx, c) == {TODAY: (0, 4000), today: (0, 1000)}


# --- notices --------------------------------------------------------------------------------------


def test_a_threshold_is_crossed_from_below_it_to_at_or_above_it() -> None:
    p80 = 80 * HOUR_MS
    assert usage.crossed(p80 - 1, 100, p80, 100, (50, 80, 90)) == [80]
    assert usage.crossed(p80, 100, p80 + 1, 100, (80,)) == []  # already at it
    assert usage.crossed(p80 - 2, 100, p80 - 1, 100, (80,)) == []
    assert usage.crossed(0, 100, PLAN_MS, 100, (50, 80, 100)) == [50, 80, 100]
    assert usage.crossed(p80, 200, p80, 100, (40, 80)) == [80]  # a smaller plan: 40 % before, 80 % after
    assert usage.crossed(p80, 100, p80, 200, (40, 80)) == []


def test_each_crossing_is_numbered_per_threshold_and_queues_its_email(ctx: Context) -> None:
    c, other = make_contract(ctx, "ours", 100), make_contract(ctx, "theirs", 100)
    with ctx.db.session() as s:
        usage.record_crossings(s, other, 0, 100, PLAN_MS, 100, (80, 90), now=NOW)
        usage.record_crossings(s, c, 0, 100, 85 * HOUR_MS, 100, (80, 90), now=NOW)
    with ctx.db.session() as s:
        made = usage.record_crossings(s, c, 0, 100, 95 * HOUR_MS, 200, (40, 45, 80, 90), now=NOW)
        got = [(n.contract_id, n.kind, n.threshold_percent, n.crossing, n.used_ms, n.plan_hours, n.created_at)
               for n in made]
        assert got == [(c, "quota", 40, 1, 95 * HOUR_MS, 200, NOW), (c, "quota", 45, 1, 95 * HOUR_MS, 200, NOW)]
        ids = [n.id for n in made]
    with ctx.db.session() as s:
        usage.record_crossings(s, c, 0, 100, 95 * HOUR_MS, 100, (80, 90), now=NOW)
    with ctx.db.session() as s:
        rows = s.execute(select(Notice.threshold_percent, Notice.crossing).where(Notice.contract_id == c)
                         .order_by(Notice.threshold_percent, Notice.crossing)).all()
        assert [tuple(r) for r in rows] == [(40, 1), (45, 1), (80, 1), (80, 2), (90, 1)]
        jobs = {j.key: (j.kind, j.payload) for j in s.scalars(select(Job))}
        assert len(jobs) == 2 + 5
        for notice_id in ids:
            assert jobs[f"notice-mail:{notice_id}"] == ("notice-mail", {"notice_id": str(notice_id)})
    with ctx.db.session() as s:
        assert usage.record_crossings(s, c, 0, 100, 10, 100, (80,)) == []
        [late] = usage.record_crossings(s, c, 0, 100, PLAN_MS, 100, (100,))
        assert late.created_at > NOW  # now by default


def _notice(p: int, used_ms: int, plan: int = 100) -> Notice:
    return Notice(id=uuid.uuid4(), contract_id=uuid.uuid4(), kind="quota", threshold_percent=p, crossing=1,
                  used_ms=used_ms, plan_hours=plan, created_at=NOW)


def test_a_notice_reads_the_figures_and_at_100_percent_says_new_videos_are_refused() -> None:
    make_room = ("To make room, the contract's administrator can ask for 100 more hours, or videos can be exported "
                 "and deleted (videos in the trash count until the trash is emptied).")
    assert usage.notice_text(_notice(90, 90 * HOUR_MS + 1, 100), "テスト歯科") == (
        "Stored video reached 90% of the 100-hour plan",
        "テスト歯科: 90.01 of the 100 video hours in the plan are used (90% or more). " + make_room)
    refused = ("New videos are refused until there is room again; recordings already uploading are saved in full, "
               "and photos are always accepted. ")
    assert usage.notice_text(_notice(100, 200 * HOUR_MS, 200), "A") == (
        "Stored video reached 100% of the 200-hour plan",
        "A: 200 of the 200 video hours in the plan are used (100% or more). " + refused + make_room)
    assert refused not in usage.notice_text(_notice(99, 99 * HOUR_MS), "A")[1]
    assert refused in usage.notice_text(_notice(120, 120 * HOUR_MS), "A")[1]


# --- limits ---------------------------------------------------------------------------------------


VIDEO_NAMES = [".mp4", ".m4v", ".mov", ".qt", ".avi", ".mts", ".m2ts", ".ts", ".mkv", ".webm", ".wmv", ".3gp",
               ".mpg", ".mpeg"]


def test_a_video_is_announced_by_its_filetype_or_its_file_name() -> None:
    assert frozenset(VIDEO_NAMES) == usage.VIDEO_SUFFIXES
    for suffix in VIDEO_NAMES:
        assert usage.declares_video({"filename": f"REC 0001{suffix.upper()}"}), suffix
        assert usage.declares_video({"name": f"clip{suffix}"}), suffix
    assert usage.declares_video({"filetype": " Video/MP4 ", "filename": "upload.bin"})
    assert usage.declares_video({"filetype": "video/x-anything"})
    assert usage.declares_video({"filename": "", "name": "x.mov"})
    assert not usage.declares_video({})
    assert not usage.declares_video({"filetype": "image/jpeg", "filename": "IMG_0001.JPG"})
    assert not usage.declares_video({"filetype": "image/video/mp4", "filename": "mp4"})
    assert not usage.declares_video({"filename": "photo.jpg", "name": "clip.mp4"})  # the file name comes first


def test_the_refusal_gives_the_figures_and_the_ways_out() -> None:
    problem = usage.limit_problem(PLAN_MS + HOUR_MS // 2, 100, {"Tus-Resumable": "1.0.0"})
    assert (problem.status, problem.title, problem.code, problem.headers) == (
        403, "Video hours used up", "video-quota-full", {"Tus-Resumable": "1.0.0"})
    assert problem.detail == ("New videos cannot be saved: 100.5 of the 100 video hours in this contract's plan are "
                              "used. " + WAYS_OUT)
    assert problem.extra == {"used_hours": 100.5, "plan_hours": 100,
                             "ways_out": ["larger-plan", "export-and-delete-videos"]}
    assert usage.limit_problem(PLAN_MS - 1, 100).headers == {}
    assert usage.limit_problem(PLAN_MS - 1, 100).extra["used_hours"] == 100.0


def test_a_new_upload_is_refused_only_when_a_video_meets_a_full_contract(ctx: Context) -> None:
    c, other = make_contract(ctx, "ours", 100), make_contract(ctx, "theirs", 100)
    video, photo = {"filename": "rec.mp4"}, {"filename": "IMG.JPG", "filetype": "image/jpeg"}
    set_counter(ctx, other, PLAN_MS * 2)
    set_counter(ctx, c, PLAN_MS - 1)
    with ctx.db.session() as s:
        assert usage.check_new_upload(s, c, video) is False
        assert usage.still_at_limit(s, c) is None
    set_counter(ctx, c, PLAN_MS)
    with ctx.db.session() as s:
        problem = _refusal(usage.check_new_upload, s, c, video, headers={"Tus-Resumable": "1.0.0"})
        assert (problem.status, problem.code, problem.headers) == (403, "video-quota-full",
                                                                   {"Tus-Resumable": "1.0.0"})
        assert (problem.extra["used_hours"], problem.extra["plan_hours"]) == (100.0, 100)
        assert usage.check_new_upload(s, c, photo) is True  # kept on the upload: the completion checks again
        assert usage.check_new_upload(s, c, video, replay=True) is True
        assert usage.still_at_limit(s, c) == (PLAN_MS, 100)
    set_counter(ctx, c, PLAN_MS + 7, plan_hours=200)
    with ctx.db.session() as s:
        assert usage.check_new_upload(s, c, video) is False
        assert usage.still_at_limit(s, c) is None
        assert usage.still_at_limit(s, other) == (PLAN_MS * 2, 100)
        assert _refusal(usage.check_new_upload, s, other, video).headers == {}


# --- the forecast ---------------------------------------------------------------------------------


def _forecast(ctx: Context, contract_id: uuid.UUID, used_ms: int, plan: int = 100, *, window_days: int = 30,
              since: date | None = None) -> date | None:
    with ctx.db.session() as s:
        return usage.forecast_full_on(s, contract_id, used_ms, plan, today=TODAY, window_days=window_days,
                                      since=since)


def test_the_forecast_window_ends_today_and_holds_only_the_contracts_days(ctx: Context) -> None:
    c, other = make_contract(ctx, "ours"), make_contract(ctx, "theirs")
    _put_days(ctx, c, {TODAY: (HOUR_MS, 0), TODAY - timedelta(days=9): (4 * HOUR_MS, HOUR_MS),
                       TODAY - timedelta(days=10): (1000 * HOUR_MS, 0), TODAY + timedelta(days=1): (500 * HOUR_MS, 0),
                       TODAY - timedelta(days=30): (3000 * HOUR_MS, 0)})
    _put_days(ctx, other, {TODAY: (700 * HOUR_MS, 0)})
    # 10 days (today and the 9 before): 4 h net, 60 h left: 150 days
    assert _forecast(ctx, c, 40 * HOUR_MS, window_days=10) == TODAY + timedelta(days=150)
    # 1 day: 1 h net, 60 h left
    assert _forecast(ctx, c, 40 * HOUR_MS, window_days=1) == TODAY + timedelta(days=60)
    assert _forecast(ctx, c, 40 * HOUR_MS, window_days=0) == TODAY + timedelta(days=60)  # at least today
    assert _forecast(ctx, c, 40 * HOUR_MS, window_days=-5) == TODAY + timedelta(days=60)
    # 11 days with the big day: 1004 h over 11 days, 60 h left: 0.66 days, rounded up to 1
    assert _forecast(ctx, c, 40 * HOUR_MS, window_days=11) == TODAY + timedelta(days=1)
    # 61 h left at 4 h / 10 days: 152.5 days, rounded up
    assert _forecast(ctx, c, 39 * HOUR_MS, window_days=10) == TODAY + timedelta(days=153)
    with ctx.db.session() as s:  # by default 30 days (not the 31st), no first day: 1004 h over 30 days: 1.8 days
        assert usage.forecast_full_on(s, c, 40 * HOUR_MS, 100, today=TODAY) == TODAY + timedelta(days=2)


def test_the_forecast_starts_no_earlier_than_the_contracts_first_day(ctx: Context) -> None:
    c = make_contract(ctx, "ours")
    _put_days(ctx, c, {TODAY: (HOUR_MS, 0), TODAY - timedelta(days=3): (2 * HOUR_MS, 0)})
    # since 4 days ago: 3 h over 5 days, 60 h left: 100 days (not 600 over 30 days)
    assert _forecast(ctx, c, 40 * HOUR_MS, since=TODAY - timedelta(days=4)) == TODAY + timedelta(days=100)
    # since 3 days ago: 3 h over 4 days: 80 days
    assert _forecast(ctx, c, 40 * HOUR_MS, since=TODAY - timedelta(days=3)) == TODAY + timedelta(days=80)
    # since = the window's own start (29 days ago): 30 days, as without it
    assert _forecast(ctx, c, 40 * HOUR_MS, since=TODAY - timedelta(days=29)) == TODAY + timedelta(days=600)
    assert _forecast(ctx, c, 40 * HOUR_MS, since=TODAY - timedelta(days=300)) == TODAY + timedelta(days=600)
    assert _forecast(ctx, c, 40 * HOUR_MS) == TODAY + timedelta(days=600)
    # since in the future (a clock skew): today alone, 1 h a day
    assert _forecast(ctx, c, 40 * HOUR_MS, since=TODAY + timedelta(days=5)) == TODAY + timedelta(days=60)


def test_the_forecast_is_today_when_full_and_none_when_not_filling_or_past_year_9999(ctx: Context) -> None:
    c, shrinking, crawling = make_contract(ctx, "ours"), make_contract(ctx, "shrinking"), make_contract(ctx, "slow")
    assert _forecast(ctx, c, PLAN_MS) == TODAY
    assert _forecast(ctx, c, PLAN_MS + 1) == TODAY
    assert _forecast(ctx, c, PLAN_MS - 1) is None  # no days at all
    _put_days(ctx, c, {TODAY: (HOUR_MS, HOUR_MS)})
    assert _forecast(ctx, c, PLAN_MS - 1) is None  # net zero
    _put_days(ctx, shrinking, {TODAY: (HOUR_MS, HOUR_MS + 1)})
    assert _forecast(ctx, shrinking, 0) is None
    _put_days(ctx, crawling, {TODAY: (1, 0)})
    assert _forecast(ctx, crawling, PLAN_MS - 1, window_days=1) == TODAY + timedelta(days=1)
    assert _forecast(ctx, crawling, PLAN_MS - 2, window_days=1) == TODAY + timedelta(days=2)
    assert _forecast(ctx, crawling, PLAN_MS - 2_000_000, window_days=1) == TODAY + timedelta(days=2_000_000)
    assert _forecast(ctx, crawling, PLAN_MS - 3_000_000, window_days=1) is None  # past 31 December 9999
    assert _forecast(ctx, crawling, 0, 1000, window_days=1) is None  # past what a timedelta holds


def test_the_quota_of_an_old_contract_looks_back_30_days_by_default(ctx: Context) -> None:
    c = make_contract(ctx, "old", 300, created_at=datetime(2025, 1, 1, tzinfo=UTC))
    set_counter(ctx, c, 100 * HOUR_MS)
    _put_days(ctx, c, {TODAY - timedelta(days=29): (2 * HOUR_MS, 0), TODAY - timedelta(days=30): (1000 * HOUR_MS, 0)})
    with ctx.db.session() as s:  # 2 h over 30 days, 200 h left: 3000 days
        assert usage.quota_of(s, c, now=NOW).forecast_full_on == TODAY + timedelta(days=3000)


def test_the_quota_of_a_contract_reads_its_counter_its_age_and_the_window(ctx: Context) -> None:
    created = datetime(2026, 6, 10, 15, 30, tzinfo=UTC)  # 11 June in Japan
    c = make_contract(ctx, "ours", 300, created_at=created)
    set_counter(ctx, c, 100 * HOUR_MS)
    _put_days(ctx, c, {TODAY: (HOUR_MS, 0), TODAY - timedelta(days=3): (4 * HOUR_MS, 0),
                       date(2026, 6, 11): (HOUR_MS, 0), date(2026, 6, 10): (100 * HOUR_MS, 0)})
    with ctx.db.session() as s:
        # since 11 June: 6 h over 5 days, 200 h left: 166.7 days, rounded up
        assert usage.quota_of(s, c, now=NOW) == usage.Quota(300, 100 * HOUR_MS, TODAY + timedelta(days=167))
        # a 4-day window: 5 h over 4 days: 160 days
        assert usage.quota_of(s, c, now=NOW, window_days=4).forecast_full_on == TODAY + timedelta(days=160)
        # at 14:59 UTC on 14 June it is still 14 June in Japan: 5 h over 4 days
        earlier = datetime(2026, 6, 14, 14, 59, tzinfo=UTC)
        assert usage.quota_of(s, c, now=earlier).forecast_full_on == date(2026, 6, 14) + timedelta(days=160)
        assert usage.quota_of(s, c).forecast_full_on is None  # now by default: months later, nothing recorded since
        missing = uuid.uuid4()
        with pytest.raises(LookupError, match=f"^no contract {missing}$"):
            usage.quota_of(s, missing, now=NOW)


# --- the operator's recount -----------------------------------------------------------------------


def _stored(ctx: Context, tenant: Tenant, patient_id: uuid.UUID, kind: str, duration_s: float | None,
            deleted: bool = False) -> None:
    """A media row as ingest leaves it, without the file (the recount reads the rows only)."""
    with ctx.db.session() as s:
        s.add(Media(id=uuid.uuid4(), contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[0],
                    patient_id=patient_id, kind=kind, mime="video/mp4" if kind == "video" else "image/jpeg",
                    sha256="0" * 64, size=1, filename="f", captured_at=NOW, duration_s=duration_s, source="station",
                    deleted_at=NOW if deleted else None))


def test_the_recount_sums_the_contracts_videos_trash_included_oldest_contract_first(ctx: Context) -> None:
    newer = make_tenant(ctx, "newer", clinics=1, created_at=datetime(2026, 3, 1, tzinfo=UTC))
    older = make_tenant(ctx, "older", clinics=1, created_at=datetime(2025, 3, 1, tzinfo=UTC))  # inserted second
    for t in (newer, older):
        p = make_patient(ctx, t.contract_id, t.clinic_ids[0]).id
        _stored(ctx, t, p, "video", 2.5)
        _stored(ctx, t, p, "video", 1.0, deleted=True)
        _stored(ctx, t, p, "image", 30.0)  # a photo never counts, whatever its row says
        _stored(ctx, t, p, "image", None)
    with ctx.db.session() as s:
        assert usage._recount(s, newer.contract_id) == usage._recount(s, older.contract_id) == 3500
    oldest = make_contract(ctx, "oldest", created_at=datetime(2024, 1, 1, tzinfo=UTC))
    middle = make_contract(ctx, "middle", created_at=datetime(2025, 9, 1, tzinfo=UTC))
    set_counter(ctx, newer.contract_id, 3501)
    set_counter(ctx, older.contract_id, 3400)
    set_counter(ctx, oldest, 1)
    set_counter(ctx, middle, 2)
    checked, drifts = usage.verify(ctx.db)
    assert checked == 4
    assert drifts == [usage.Drift(oldest, "oldest", 1, 0), usage.Drift(older.contract_id, "older", 3400, 3500),
                      usage.Drift(middle, "middle", 2, 0), usage.Drift(newer.contract_id, "newer", 3501, 3500)]
    assert [d.drift_ms for d in drifts] == [1, -100, 2, 1]
