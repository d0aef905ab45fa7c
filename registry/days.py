"""China's calendar day (UTC+8): the day SNMS dates its logins by, and the day the per-prefix
statistics and the daily quotas count in, so that "today" is the same day for all three and
an enterprise's day starts at its midnight, not at 08:00."""

from __future__ import annotations

import datetime as dt

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
DAY_SECONDS = 86400
_OFFSET = 8 * 3600


def china_date(moment: float) -> dt.date:
    return dt.datetime.fromtimestamp(moment, CHINA).date()


def china_day(moment: float) -> str:
    """``moment`` (seconds since the epoch) as China's day, ``YYYY-MM-DD``."""
    return china_date(moment).isoformat()


def seconds_to_midnight(moment: float) -> int:
    """Whole seconds from ``moment`` until China's next midnight (at least 1)."""
    return max(1, DAY_SECONDS - int(moment + _OFFSET) % DAY_SECONDS)
