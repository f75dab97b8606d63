"""The satisfaction KPIs, month by month and by store, region, segment, channel, campaign, tier.

Every KPI is a mean over units, each unit dated by its own event in the business timezone:
CSAT and the dissatisfied rate over first-round ratings (by when the rating came), the
response rate over first-round surveys sent (by when sent), the opt-out rate over every
message sent (an opt-out on that channel within 7 days), and the case KPIs over store
managers' cases (by when the case opened). One set-based query gives each KPI's units'
count, sum and sum of squares for every month and scope; means, intervals and tests follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import duckdb
import polars as pl

from insights.closed_months import (
    Basis,
    as_moments,
    closed_moments,
    is_closed,
    keep_closed,
    kept_months,
    local_midnight_utc,
)
from warehouse.db import query_frame
from warehouse.figures import IN_SLA, OPT_OUT_DAYS, SATISFIED_SQL, SLA_DUE

Better = Literal["higher", "lower"]
SCOPES = ("overall", "store", "region", "segment", "channel", "campaign", "tier")
SCOPE_COLUMNS = {
    "store": "store_id",
    "region": "region",
    "segment": "segment",
    "channel": "channel",
    "campaign": "campaign_id",
    "tier": "tier",
}
TREND_MONTHS = 12


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    binary: bool  # a share of units (shown in %), else an average (hours)
    better: Better
    units: str  # SQL: one row per unit with at, store_id, campaign_id, channel, tier, value


# Every unit is read for its months only ($lo to $hi), and so is what it is joined with: its
# action, its rating, its second round, its opt-out. What bounds each join is a fact of the
# loop, not a guess: a rating is matched to its action only within the reply window after the
# send (feedback.ingest), a case opens from a collected rating (collect runs daily: a month of
# slack), a second round is sent after its case opened, a rating comes after its survey was
# sent, and an opt-out counts within 7 days after the message. So the lookups skip the history
# before the months read (zone maps on the stored times) and every figure stays as it was.
ACTION_LOOKUP = "a.sent_at >= ${since} AND a.sent_at < $hi"
CASE_SLACK = timedelta(days=31)  # a case's action: the reply window and a month before it
# Units that several KPIs read (the first-round ratings with their action: CSAT and the
# dissatisfied; the cases with theirs: the three case KPIs) are joined once a query, as
# materialized sets the KPIs then read (``SHARED_UNITS``): each KPI joining its own read the
# months' outbox five times.
RATED_UNITS = f"""
SELECT r.received_at AS at, a.store_id, a.campaign_id, a.channel, a.tier, r.score
FROM action_ratings r JOIN care_actions a
    ON a.action_id = r.action_id AND {ACTION_LOOKUP.format(since="rated_from")}
WHERE r.round = 1 AND r.received_at >= $lo AND r.received_at < $hi
"""
RATINGS = """
SELECT r.at, r.store_id, r.campaign_id, r.channel, r.tier, {value} AS value FROM rated_units r
"""
# The rated surveys are joined as one set (a hash join on the months' ratings): a
# correlated EXISTS per survey cost three times as much over two months of 10 million
# customers' surveys.
SURVEYS = """
SELECT a.sent_at AS at, a.store_id, a.campaign_id, a.channel, a.tier,
    (r.action_id IS NOT NULL)::INT AS value
FROM care_actions a
LEFT JOIN (
    SELECT DISTINCT action_id FROM action_ratings WHERE received_at >= $lo - INTERVAL 1 DAY
) r USING (action_id)
WHERE a.round = 1 AND a.survey AND a.sent_at >= $lo AND a.sent_at < $hi
"""
CASE_UNITS = f"""
SELECT m.*, a.channel AS action_channel, a.tier AS action_tier
FROM manager_cases m JOIN care_actions a
    ON a.action_id = m.action_id AND {ACTION_LOOKUP.format(since="cased_from")}
WHERE m.opened_at >= $lo AND m.opened_at < $hi
"""
CASES = """
SELECT m.opened_at AS at, m.store_id, m.campaign_id, m.action_channel AS channel,
    m.action_tier AS tier, {value} AS value
FROM case_units m
{joins}
WHERE ({where})
"""
SHARED_UNITS = {"rated_units": RATED_UNITS, "case_units": CASE_UNITS}
# A case's second round, as RECOVERY_DUE reads it: ``s`` sent, ``u`` ended unsent (suppressed
# at send, expired, failed, or never confirmed and then undelivered or bounced): not queued,
# nor on its way. Made after its case opened, so both are found among the rows of the period
# on (the zone maps skip the history).
SECOND_ROUND = """LEFT JOIN care_actions s ON s.action_id = m.second_round_action_id
    AND s.sent_at >= $lo - INTERVAL 1 DAY
LEFT JOIN care_actions u ON u.action_id = m.second_round_action_id
    AND u.created_at >= $lo - INTERVAL 1 DAY AND u.sent_at IS NULL
    AND u.status NOT IN ('queued', 'sending', 'unconfirmed')"""
# Recovery, defined here once: a case is recovered when its second round or a follow-up after
# its manager's resolution was rated 4-5. Like SLA compliance it counts only the cases whose
# outcome is due: recovered, or the second round rated, or the second round's reply window
# over (from when it was sent; with no second round, or one that never went, from when the
# case opened: a second round suppressed at send, expired, failed or bounced unsent once kept
# its case out for good). A case still waiting for its answer is not counted as not
# recovered, so a month that has just ended is not "down" against a complete one. It reads
# the case's second round as ``s`` and ``u`` (SECOND_ROUND).
RECOVERED = "(m.status = 'recovered')"
RECOVERY_DUE = """m.status = 'recovered' OR m.recovered_score IS NOT NULL
    OR coalesce(s.sent_at, CASE WHEN m.second_round_action_id IS NULL OR u.action_id IS NOT NULL
                                THEN m.opened_at END)
        + to_hours($window) <= $now"""
# An opt-out within 7 days of a message on its channel; opt-outs read only from the months'
# start to 7 days past their end (what the window allows). The messages followed by one are
# found from the opt-outs' side (a few thousand, joined to the months' messages) and marked
# as one set: a correlated EXISTS per message cost twice as much.
OPT_OUTS = f"""
WITH followed AS (
    SELECT DISTINCT a.action_id FROM opt_outs o
    JOIN care_actions a ON a.subscriber_id = o.subscriber_id AND a.channel = o.channel
        AND o.occurred_at >= a.sent_at AND o.occurred_at < a.sent_at + INTERVAL {OPT_OUT_DAYS} DAY
    WHERE o.event = 'opt_out' AND o.occurred_at >= $lo AND o.occurred_at < $opt_outs_to
        AND a.sent_at >= $lo AND a.sent_at < $hi
)
SELECT a.sent_at AS at, a.store_id, a.campaign_id, a.channel, a.tier,
    (f.action_id IS NOT NULL)::INT AS value
FROM care_actions a LEFT JOIN followed f USING (action_id)
WHERE a.sent_at >= $lo AND a.sent_at < $hi
"""
KPIS = (
    Kpi(
        "csat",
        "CSAT (ratings of 4-5)",
        True,
        "higher",
        RATINGS.format(value=f"{SATISFIED_SQL}::INT"),
    ),
    Kpi("response_rate", "Response rate (surveys rated)", True, "higher", SURVEYS),
    Kpi(
        "dissatisfied_rate",
        "Dissatisfied (ratings of 1-2)",
        True,
        "lower",
        RATINGS.format(value="(score <= 2)::INT"),
    ),
    Kpi(
        "recovery_rate",
        "Recovery (second round or follow-up rated 4-5, of cases due)",
        True,
        "higher",
        CASES.format(value=f"{RECOVERED}::INT", where=RECOVERY_DUE, joins=SECOND_ROUND),
    ),
    Kpi(
        "time_to_first_contact",
        "Time to first contact (hours)",
        False,
        "lower",
        CASES.format(
            value="date_diff('second', m.opened_at, m.contacted_at) / 3600.0",
            where="m.contacted_at IS NOT NULL",
            joins="",
        ),
    ),
    Kpi(
        "sla_compliance",
        "Cases contacted within the SLA",
        True,
        "higher",
        CASES.format(value=f"coalesce({IN_SLA}, false)::INT", where=SLA_DUE, joins=""),
    ),
    Kpi("opt_out_rate", "Opt-outs per message", True, "lower", OPT_OUTS),
)
KPI_BY_NAME = {k.name: k for k in KPIS}


MONTH_FORMAT = r"[0-9]{4}-(0[1-9]|1[0-2])"


def month_start(month: str) -> date:
    """``2026-02`` -> 2026-02-01; a clear error for anything else (``2026-2`` included: the
    month names the report's files)."""
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}", month) and not re.fullmatch(MONTH_FORMAT, month):
        raise ValueError(f"month {month!r}: there is no month {month[5:]}; 01 to 12")
    if not re.fullmatch(MONTH_FORMAT, month):
        raise ValueError(f"month {month!r}: give it as YYYY-MM, e.g. 2026-02")
    if month < "0001-01":
        raise ValueError(f"month {month!r}: the calendar starts in year 0001")
    return datetime.strptime(month, "%Y-%m").date()


# The months a report can cover: it reads the thirteen months before its own and days around
# them (late replies, a case's slack), and the next month's first day, all inside the calendar.
REPORT_MONTHS = ("0003-01", "9999-11")


def report_month(month: str) -> date:
    """A month a report can cover, as its first day; a clear error for any other (a malformed
    one, or one whose reads would run off the calendar's ends)."""
    if re.fullmatch(MONTH_FORMAT, month) and not REPORT_MONTHS[0] <= month <= REPORT_MONTHS[1]:
        raise ValueError(
            f"month {month!r}: a report covers a month from {REPORT_MONTHS[0]} to "
            f"{REPORT_MONTHS[1]} (it reads the months before it and the next month's first day)"
        )
    return month_start(month)


def shift_month(month: str, by: int) -> str:
    """The month ``by`` months from ``month``; a ValueError naming ``month`` when that is
    outside the calendar (a report of 9999-12 reads the next month's first day)."""
    start = month_start(month)
    index = start.year * 12 + start.month - 1 + by
    if not 1 <= index // 12 <= 9999:
        raise ValueError(
            f"month {month!r}: {by:+d} months from it is outside the calendar (years 1 to 9999), "
            "which a report of it reads"
        )
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_last_day(month: str) -> date:
    """``2026-02`` -> 2026-02-28: the day before the next month's first."""
    return month_start(shift_month(month, 1)) - timedelta(days=1)


def _units_sql() -> str:
    parts = [f"SELECT '{k.name}' AS kpi, * FROM ({k.units})" for k in KPIS]
    return " UNION ALL ".join(parts)


def trend_months(month: str) -> list[str]:
    """The trend's months: the 12 up to ``month``, oldest first."""
    return [shift_month(month, -back) for back in range(TREND_MONTHS - 1, -1, -1)]


def kpi_moments(
    con: duckdb.DuckDBPyConnection, month: str, zone: str, *, sla_hours: int, now: datetime,
    reply_window_hours: int,
) -> pl.DataFrame:  # fmt: skip
    """Per KPI, month, scope and key: units ``n``, ``total`` and ``squares`` of their values.
    Overall for the 12 months up to ``month``; every other scope for ``month`` and the one
    before it. Every surface that shows a month's KPIs reads them here: a closed month
    (``insights.closed_months``) from the warehouse, written the first time it is needed;
    only the months still open are computed from their units (so it needs a connection that
    may write: a month that has closed since the last report is kept then)."""
    basis = Basis(zone, sla_hours, reply_window_hours)
    months = trend_months(month)
    closed = [m for m in months if is_closed(month_start(shift_month(m, 1)), zone, now)]
    kept = kept_months(con, closed, basis)
    closing = [m for m in closed if m not in kept]
    detailed = [shift_month(month, -1), month]
    read = live_moments(con, closing + [m for m in months if m not in closed],
                        closing + detailed, basis, now)  # fmt: skip
    keep_closed(con, closing, read, basis, now)
    frame = pl.concat([closed_moments(con, sorted(kept), basis), read])
    return frame.filter((pl.col("scope") == "overall") | pl.col("month").is_in(detailed))


def live_moments(
    con: duckdb.DuckDBPyConnection, months: list[str], detailed: list[str], basis: Basis,
    now: datetime,
) -> pl.DataFrame:  # fmt: skip
    """``months``' moments from their units: overall, and every scope for ``detailed``.
    A unit's month is found by comparing its stored instant with the months' boundaries in
    the business zone, computed once here (the same placement as ``timezone(zone, at)``,
    without converting every row)."""
    if not months:
        return as_moments(pl.DataFrame())
    bounds = {m: month_bounds(m, basis.zone) for m in months}
    placing = " ".join(
        f"WHEN u.at >= $lo_{n} AND u.at < $hi_{n} THEN '{m}'" for n, m in enumerate(months)
    )
    sums = "sum(n)::BIGINT AS n, sum(total) AS total, sum(squares) AS squares"
    by_scope = [
        f"SELECT kpi, month, '{scope}' AS scope, coalesce({column}::VARCHAR, '(none)') AS key, "
        f"{sums} FROM placed WHERE list_contains($detailed, month) GROUP BY ALL"
        for scope, column in SCOPE_COLUMNS.items()
    ]
    # The units are summed once into cells of every column a scope reads (a store brings its
    # region, a campaign its segment); each scope then adds up a few thousand cells.
    shared = ", ".join(f"{name} AS MATERIALIZED ({sql})" for name, sql in SHARED_UNITS.items())
    sql = f"""
    WITH {shared}, cells AS (
        SELECT kpi, CASE {placing} END AS month, store_id, campaign_id, channel, tier,
            count(*) AS n, sum(value) AS total, sum(value * value) AS squares
        FROM ({_units_sql()}) u GROUP BY ALL
    ), placed AS (
        SELECT cells.*, st.region, c.segment FROM cells
        LEFT JOIN stores st USING (store_id)
        LEFT JOIN campaigns c USING (campaign_id)
        WHERE month IS NOT NULL
    )
    SELECT kpi, month, 'overall' AS scope, NULL::VARCHAR AS key, {sums} FROM placed GROUP BY ALL
    UNION ALL {" UNION ALL ".join(by_scope)}
    """
    lo, hi = min(lo for lo, _ in bounds.values()), max(hi for _, hi in bounds.values())
    params: dict[str, object] = {
        "lo": lo, "hi": hi, "detailed": detailed, "sla": basis.sla_hours, "now": now,
        "window": basis.reply_window_hours,
        "rated_from": lo - timedelta(hours=basis.reply_window_hours, days=1),
        "cased_from": lo - timedelta(hours=basis.reply_window_hours) - CASE_SLACK,
        "opt_outs_to": hi + timedelta(days=OPT_OUT_DAYS),
    }  # fmt: skip
    for n, (lo, hi) in enumerate(bounds.values()):
        params |= {f"lo_{n}": lo, f"hi_{n}": hi}
    return as_moments(query_frame(con, sql, params))


def month_bounds(month: str, zone: str) -> tuple[datetime, datetime]:
    """The UTC instants at which ``month`` begins and ends in ``zone``."""
    end = month_start(shift_month(month, 1))
    return local_midnight_utc(month_start(month), zone), local_midnight_utc(end, zone)
