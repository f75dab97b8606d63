"""Each customer's first care per campaign, stored a settled business day at a time: the units
the retention lift counts (``insights.lift``), without grouping months of the outbox at every
report (at a year of history that grouping was half the report's time and its peak memory).

``care_firsts`` holds a row per customer, campaign and business day (dated in the zone it is
stored for) on which the customer had first-round care by that campaign, held out or planned
for contact (a suppressed action is neither): whether the day's first care was the holdout's,
and ``previous``, a day of that customer's care by that campaign before: in the same month
when there was one, else their last before the month (NULL for the first ever). A customer's
first care in a window from ``since``, a month's first day, is then their row in the window
whose ``previous`` is before ``since``: a filter on the window's rows.

A day is stored once nothing can change what it says: it is over, and a day more
(STORE_LAG_DAYS: a plan dates its care by its own clock), and a queued action can no longer be
suppressed by dispatch (an opt-out that came after planning), so days are stored up to the day
before the oldest first-round action still queued or sending. The window's days after the
stored ones are read from the outbox as they are. Collect stores the settled days up to the
day before yesterday (``store_past_days``: the day's first collect stores what has settled, a
later one what settled since, the others find nothing to do), so a month's report finds its
lift's days stored and stores none itself (a month of them at once was 3.8 s of a 19 s report
at 10 million subscribers with a year; a day is 0.3-0.6 s of a collect). A report stores
whatever no collect stored, up to the same day (a warehouse whose collects ran elsewhere).
Stored days are frozen, like the closed months' KPIs: a backfill of older actions must delete
the rows of the days it touches and set ``care_firsts_stored.through`` back before them, and
so must a flow run by hand with a ``now`` more than a day back (the CLI and the deployments
pass none).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb

from core.clock import business_date
from insights.closed_months import local_midnight_utc
from warehouse.db import is_writable, transaction

UNIT = "md5_number(campaign_id || '|' || subscriber_id)"
# What a day's care says: first-round, held out or planned for contact.
COUNTED = "round = 1 AND status <> 'suppressed'"
# Whether a customer's first care of a stretch (a day, the days not stored) was the holdout's.
HELD_OUT_FIRST = "arg_min(status = 'held_out', created_at) AS held_out"
# Still able to become suppressed (campaigns.dispatch): what keeps its day from being stored.
PENDING_SQL = """
SELECT min(created_at) FROM care_actions
WHERE round = 1 AND status IN ('queued', 'sending') AND created_at >= $lo AND created_at < $hi
"""
# The new days of one month: each customer's row per campaign and day, and ``previous``: for
# the customer's first day in the piece, their last stored day; for the later ones, that first
# day. Either way a care day before it, in the same month whenever there was one (see
# first_care_units: a window starts on a month's first day). The stored rows are found by
# ``unit``, the md5 of the campaign and customer as a 128-bit number (the same in every
# version): one pass over a number column, where matching the two strings over a year of
# rows cost 12 s at 10 million. Two units sharing a number is a 1 in 10^20 chance at a
# billion units.
DAYS_SQL = f"""
CREATE OR REPLACE TEMP TABLE first_care_new_days AS
SELECT *, {UNIT} AS unit FROM (
    SELECT campaign_id, subscriber_id, timezone($zone, created_at)::DATE AS cared_on,
        {HELD_OUT_FIRST}
    FROM care_actions
    WHERE {COUNTED} AND created_at >= $lo AND created_at < $hi
    GROUP BY ALL
)
"""
UNITS_OF_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE first_care_new_units AS
SELECT unit, min(cared_on) AS first_on FROM first_care_new_days GROUP BY unit
"""
STORE_SQL = """
INSERT INTO care_firsts
SELECT $zone, d.cared_on, d.campaign_id, d.subscriber_id, d.unit, d.held_out,
    CASE WHEN d.cared_on = u.first_on THEN b.previous ELSE u.first_on END
FROM first_care_new_days d JOIN first_care_new_units u USING (unit)
LEFT JOIN (
    SELECT unit, max(cared_on) AS previous FROM care_firsts
    WHERE zone = $zone AND unit IN (SELECT unit FROM first_care_new_units)
    GROUP BY unit
) b USING (unit)
"""
MARK_SQL = """
INSERT INTO care_firsts_stored VALUES ($zone, $through)
ON CONFLICT (zone) DO UPDATE SET through = excluded.through
"""
# Each customer's first care per campaign from $since to $last: the stored days' rows whose
# previous care is before $since, and, for the customers with none there, their first in the
# days not stored yet ($live_lo to $hi), read from the outbox as they are.
UNITS_SQL = f"""
WITH stored AS (
    SELECT campaign_id, subscriber_id, held_out, cared_on FROM care_firsts
    WHERE zone = $zone AND cared_on >= $since AND cared_on <= $stored_last
      AND (previous IS NULL OR previous < $since)
), live AS (
    SELECT campaign_id, subscriber_id, min(created_at) AS first_at,
        {HELD_OUT_FIRST}
    FROM care_actions
    WHERE {COUNTED} AND created_at >= $live_lo AND created_at < $hi
    GROUP BY ALL
)
SELECT * FROM stored
UNION ALL
SELECT l.campaign_id, l.subscriber_id, l.held_out, timezone($zone, l.first_at)::DATE
FROM live l ANTI JOIN stored USING (campaign_id, subscriber_id)
"""


def stored_through(con: duckdb.DuckDBPyConnection, zone: str) -> date | None:
    row = con.execute("SELECT through FROM care_firsts_stored WHERE zone = $zone", {"zone": zone})
    found = row.fetchone()
    return found[0] if found else None


def store_days(con: duckdb.DuckDBPyConnection, zone: str, until: date) -> date | None:
    """Store the settled days up to ``until`` not stored yet, in one transaction; the last day
    stored (None when none is). A read-only connection stores nothing. Only the days to store
    are read (the first call reads the history once)."""
    if not is_writable(con):
        return stored_through(con, zone)
    with transaction(con):
        through = stored_through(con, zone)
        first = through + timedelta(days=1) if through else _first_day(con, zone)
        if first is None or first > until:
            return through
        end = _settled_until(con, zone, first, until)
        if end < first:
            return through
        for lo, hi in _month_pieces(first, end, zone):
            con.execute(DAYS_SQL, {"zone": zone, "lo": lo, "hi": hi})
            con.execute(UNITS_OF_DAYS_SQL)
            con.execute(STORE_SQL, {"zone": zone})
        con.execute(
            "DROP TABLE IF EXISTS first_care_new_days; DROP TABLE IF EXISTS first_care_new_units"
        )
        con.execute(MARK_SQL, {"zone": zone, "through": end})
    return end


# A plan dates its care by its own clock, so care can land on a past day: a day is stored by
# collect once it is this many days behind collect's business day. Today may still grow (a plan
# later today adds to it), and yesterday too where two hosts' clocks disagree across midnight,
# or a flow is run again with yesterday's time (its ``now``). A report stores no day within
# the lag either (first_care_units); its window mostly ends CARELOOP_LIFT_DAYS (90) before its
# day, so the lag costs it nothing.
STORE_LAG_DAYS = 2


def store_past_days(con: duckdb.DuckDBPyConnection, zone: str, now: datetime) -> date | None:
    """What each collect stores: the settled days up to STORE_LAG_DAYS before ``now``'s
    business day in ``zone``. The last day stored, as ``store_days``."""
    today = business_date(ZoneInfo(zone), now)
    return store_days(con, zone, today - timedelta(days=STORE_LAG_DAYS))


def _month_pieces(first: date, end: date, zone: str) -> list[tuple[datetime, datetime]]:
    """The stored instants of business days ``first`` to ``end``, cut at each month's first
    day: a piece's days are all in one month."""
    pieces = []
    while first <= end:
        stop = min((first.replace(day=1) + timedelta(days=32)).replace(day=1), end + timedelta(1))
        pieces.append((local_midnight_utc(first, zone), local_midnight_utc(stop, zone)))
        first = stop
    return pieces


def _settled_until(con: duckdb.DuckDBPyConnection, zone: str, first: date, until: date) -> date:
    """``until``, or the day before the oldest action of the days ``first`` to ``until`` that
    may still be suppressed."""
    row = con.execute(
        PENDING_SQL,
        {
            "lo": local_midnight_utc(first, zone),
            "hi": local_midnight_utc(until + timedelta(1), zone),
        },
    ).fetchone()
    pending = row[0] if row else None
    if pending is None:
        return until
    return business_date(ZoneInfo(zone), pending) - timedelta(days=1)


def _first_day(con: duckdb.DuckDBPyConnection, zone: str) -> date | None:
    """The business day of the first care counted, None when there is none."""
    row = con.execute(f"SELECT min(created_at) FROM care_actions WHERE {COUNTED}").fetchone()
    return business_date(ZoneInfo(zone), row[0]) if row and row[0] else None


def first_care_units(
    con: duckdb.DuckDBPyConnection, zone: str, since: date, last: date, *, today: date
) -> tuple[str, dict[str, object]]:
    """The query (and its parameters) of each customer's first care per campaign from
    ``since``, a month's first day, to ``last`` (columns campaign_id, subscriber_id, held_out,
    cared_on), after storing the days that have settled since the last call, up to
    STORE_LAG_DAYS before ``today`` as collect does: a window ending later (a lift of a day)
    reads its last days from the outbox. A stored row's ``previous`` is exact only against a
    month's first day (STORE_SQL): any other ``since`` is a ValueError, never a wrong count."""
    if since.day != 1:
        raise ValueError(f"a retention window starts on a month's first day, not {since}")
    through = store_days(con, zone, min(last, today - timedelta(days=STORE_LAG_DAYS)))
    stored_last = min(through, last) if through is not None else since - timedelta(days=1)
    live_first = max(since, stored_last + timedelta(days=1))
    hi = local_midnight_utc(last + timedelta(days=1), zone)
    live_lo = local_midnight_utc(live_first, zone) if live_first <= last else hi
    params: dict[str, object] = {
        "zone": zone, "since": since, "stored_last": stored_last, "live_lo": live_lo, "hi": hi,
    }  # fmt: skip
    return UNITS_SQL, params
