"""The business calendar: servers run in UTC, the business in ``CARELOOP_TIMEZONE``.

Every default date (a campaign's as-of, the report's month, "today") is the business's date at
the moment of the run, never the server's: 07:00 in Shanghai is 23:00 UTC the day before.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


def utc_now() -> datetime:
    return datetime.now(UTC)


def business_date(zone: ZoneInfo, now: datetime | None = None) -> date:
    """The business's calendar date at ``now`` (default: the wall clock)."""
    moment = now or utc_now()
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; give times in UTC")
    return moment.astimezone(zone).date()


def last_month(zone: ZoneInfo, now: datetime | None = None) -> str:
    """The month before the business's current one, as YYYY-MM."""
    today = business_date(zone, now)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def stored_range(first: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants that enclose business dates ``first`` up to ``end`` (excluded) in any
    timezone: a day wider on each side. A query keeps its exact business-date test and adds
    ``at >= lo AND at < hi`` on the stored column, which zone maps can use to skip the rest
    of the history (a test on ``timezone(zone, at)`` skips nothing)."""
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(days=1)
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return lo, hi
