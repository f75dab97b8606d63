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
from datetime import date, datetime
from typing import Literal

import duckdb
import polars as pl

from core.clock import stored_range
from warehouse.db import query_frame
from warehouse.figures import IN_SLA, SATISFIED_SQL, SLA_DUE

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
OPT_OUT_DAYS = 7  # an opt-out this soon after a message is put down to that message


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    binary: bool  # a share of units (shown in %), else an average (hours)
    better: Better
    units: str  # SQL: one row per unit with at, store_id, campaign_id, channel, tier, value


RATINGS = """
SELECT r.received_at AS at, a.store_id, a.campaign_id, a.channel, a.tier, {value} AS value
FROM action_ratings r JOIN care_actions a USING (action_id)
WHERE r.round = 1 AND r.received_at >= $lo AND r.received_at < $hi
"""
SURVEYS = """
SELECT a.sent_at AS at, a.store_id, a.campaign_id, a.channel, a.tier,
    (EXISTS (SELECT 1 FROM action_ratings r WHERE r.action_id = a.action_id))::INT AS value
FROM care_actions a WHERE a.round = 1 AND a.survey AND a.sent_at >= $lo AND a.sent_at < $hi
"""
CASES = """
SELECT m.opened_at AS at, m.store_id, m.campaign_id, a.channel, a.tier, {value} AS value
FROM manager_cases m JOIN care_actions a USING (action_id)
WHERE ({where}) AND m.opened_at >= $lo AND m.opened_at < $hi
"""
# Recovery, defined here once: a case is recovered when its second round or a follow-up after
# its manager's resolution was rated 4-5. Like SLA compliance it counts only the cases whose
# outcome is due: recovered, or the second round rated, or the second round's reply window
# over (from when it was sent; with no second round, from when the case opened). A case still
# waiting for its answer is not counted as not recovered, so a month that has just ended is
# not "down" against a complete one.
RECOVERED = "(m.status = 'recovered')"
RECOVERY_DUE = """m.status = 'recovered' OR m.recovered_score IS NOT NULL
    OR coalesce((SELECT s.sent_at FROM care_actions s WHERE s.action_id = m.second_round_action_id),
        CASE WHEN m.second_round_action_id IS NULL THEN m.opened_at END)
        + to_hours($window) <= $now"""
OPT_OUTS = f"""
SELECT a.sent_at AS at, a.store_id, a.campaign_id, a.channel, a.tier,
    (EXISTS (SELECT 1 FROM opt_outs o WHERE o.subscriber_id = a.subscriber_id
        AND o.channel = a.channel AND o.event = 'opt_out' AND o.occurred_at >= a.sent_at
        AND o.occurred_at < a.sent_at + INTERVAL {OPT_OUT_DAYS} DAY))::INT AS value
FROM care_actions a WHERE a.sent_at >= $lo AND a.sent_at < $hi
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
        CASES.format(value=f"{RECOVERED}::INT", where=RECOVERY_DUE),
    ),
    Kpi(
        "time_to_first_contact",
        "Time to first contact (hours)",
        False,
        "lower",
        CASES.format(
            value="date_diff('second', m.opened_at, m.contacted_at) / 3600.0",
            where="m.contacted_at IS NOT NULL",
        ),
    ),
    Kpi(
        "sla_compliance",
        "Cases contacted within the SLA",
        True,
        "higher",
        CASES.format(value=f"coalesce({IN_SLA}, false)::INT", where=SLA_DUE),
    ),
    Kpi("opt_out_rate", "Opt-outs per message", True, "lower", OPT_OUTS),
)
KPI_BY_NAME = {k.name: k for k in KPIS}


def month_start(month: str) -> date:
    """``2026-02`` -> 2026-02-01; a clear error for anything else (``2026-2`` included: the
    month names the report's files)."""
    if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", month):
        raise ValueError(f"month {month!r}: give it as YYYY-MM, e.g. 2026-02")
    return datetime.strptime(month, "%Y-%m").date()


def shift_month(month: str, by: int) -> str:
    start = month_start(month)
    index = start.year * 12 + start.month - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _units_sql() -> str:
    parts = [f"SELECT '{k.name}' AS kpi, * FROM ({k.units})" for k in KPIS]
    return " UNION ALL ".join(parts)


def kpi_moments(
    con: duckdb.DuckDBPyConnection, month: str, zone: str, *, sla_hours: int, now: datetime,
    reply_window_hours: int,
) -> pl.DataFrame:  # fmt: skip
    """Per KPI, month, scope and key: units ``n``, ``total`` and ``squares`` of their values.
    Overall for the 12 months up to ``month``; every other scope for ``month`` and the one
    before it."""
    first = month_start(shift_month(month, -(TREND_MONTHS - 1)))
    end = month_start(shift_month(month, 1))
    previous = shift_month(month, -1)
    by_scope = [
        f"SELECT kpi, month, '{scope}' AS scope, coalesce({column}::VARCHAR, '(none)') AS key, "
        "count(*) AS n, sum(value) AS total, sum(value * value) AS squares FROM placed "
        f"WHERE month IN ($month, $previous) GROUP BY ALL"
        for scope, column in SCOPE_COLUMNS.items()
    ]
    sql = f"""
    WITH placed AS (
        SELECT u.*, strftime(timezone($zone, u.at), '%Y-%m') AS month, st.region, c.segment
        FROM ({_units_sql()}) u
        LEFT JOIN stores st USING (store_id)
        LEFT JOIN campaigns c USING (campaign_id)
        WHERE timezone($zone, u.at) >= $first AND timezone($zone, u.at) < $end
    )
    SELECT kpi, month, 'overall' AS scope, NULL::VARCHAR AS key, count(*) AS n,
        sum(value) AS total, sum(value * value) AS squares FROM placed GROUP BY ALL
    UNION ALL {" UNION ALL ".join(by_scope)}
    """
    lo, hi = stored_range(first, end)  # the units' own times: the history before is skipped
    params = {
        "zone": zone, "first": first, "end": end, "month": month, "previous": previous,
        "sla": sla_hours, "now": now, "window": reply_window_hours, "lo": lo, "hi": hi,
    }  # fmt: skip
    frame = query_frame(con, sql, params)
    return frame.with_columns(
        pl.col("n").cast(pl.Int64),
        pl.col("total").cast(pl.Float64),
        pl.col("squares").cast(pl.Float64),
    )
