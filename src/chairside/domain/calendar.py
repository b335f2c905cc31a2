"""The clinics' calendar: Japan time (Asia/Tokyo, no daylight saving).

Times are stored in UTC; a calendar day (billing, quota days, a bandwidth schedule, a capture
time sent without a zone) is a day in Japan.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

CLINIC_TZ = ZoneInfo("Asia/Tokyo")


def japan_day(when: datetime) -> date:
    """The day in Japan at an aware moment."""
    return when.astimezone(CLINIC_TZ).date()
