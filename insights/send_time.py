"""Does the learned send hour beat the fixed one? Judged on a held-out period, never on the
sends it learned from.

The estimator: the hours are learned (campaigns/send_time.py) from every sent survey before a
cut-off; the campaign's sends from the cut-off on are the held-out period. Only sends whose hour
did not depend on the learning are read: a fixed time, a due time (a store visit's survey goes
at the visit's hour) or the exploration share (a random hour of the window). Among the customers
whose learned hour differs from the fixed one, the held-out sends that happened to go at the
customer's learned hour are compared with those that went at the fixed hour: where the hour
does not follow the customer, these are two random samples of the same customers, so the
difference in their response rates is what moving them would change (with Newcombe's interval,
the sends counted as independent). Sends that the learning itself placed are left out and
counted: at their hour by construction, they would flatter it. Keep the held-out period
homogeneous (``--until``): a period whose reply rates shift (a new channel mix, a season) and
whose hours are not spread alike through it would confound the two groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from campaigns.send_time import LEARNABLE, LOCAL_HOUR, LearnedHours, learn_send_hours
from campaigns.spec import Campaign
from insights.stats import Difference, Moments, compare, shown_p, wilson

HELD_OUT_DAYS = 30  # the default held-out period: the campaign's last month of sends

HELD_OUT_SQL = f"""
CREATE OR REPLACE TEMP TABLE send_time_held_out AS
SELECT a.action_id, a.subscriber_id, a.send_time_source,
    {LOCAL_HOUR} AS hour,
    (r.action_id IS NOT NULL)::INT AS answered,
    date_diff('second', a.sent_at, r.received_at) / 60 AS reply_minutes
FROM care_actions a
JOIN subscribers s USING (subscriber_id)
LEFT JOIN latest_ratings r USING (action_id)
WHERE a.campaign_id = $campaign AND a.sent_at >= $cutoff AND a.sent_at < $until
  AND {LEARNABLE}
"""
COMPARE_SQL = """
SELECT
    count(*) FILTER (e.hour = h.hour), coalesce(sum(e.answered) FILTER (e.hour = h.hour), 0),
    count(*) FILTER (e.hour = $fixed), coalesce(sum(e.answered) FILTER (e.hour = $fixed), 0),
    count(DISTINCT e.subscriber_id) FILTER (e.hour = h.hour OR e.hour = $fixed),
    median(e.reply_minutes) FILTER (e.hour = h.hour),
    median(e.reply_minutes) FILTER (e.hour = $fixed)
FROM send_time_held_out e JOIN send_hours h USING (subscriber_id)
WHERE h.source = 'learned' AND h.hour <> $fixed
  AND e.send_time_source IS DISTINCT FROM 'learned'
  AND e.send_time_source IS DISTINCT FROM 'fallback'
"""


@dataclass(frozen=True)
class SendTimeEvaluation:
    campaign: str
    cutoff: datetime
    until: datetime
    fixed_hour: int
    learned: Moments  # held-out sends at the customer's learned hour
    fixed: Moments  # held-out sends at the fixed hour
    difference: Difference | None
    customers: int  # with a held-out send
    with_history: int  # of those, with sends before the cut-off: a learned hour
    moved: int  # of those, whose learned hour is not the fixed one
    compared: int  # of those, with a held-out send at either hour
    placed_by_learning: int  # held-out sends left out: the learning chose their hour
    model: LearnedHours
    reply_minutes: tuple[float | None, float | None] = (None, None)  # median: learned, fixed

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "cutoff": self.cutoff.isoformat(),
            "until": self.until.isoformat(),
            "fixed_hour": self.fixed_hour,
            "learned_hour": {**_rate(self.learned), "median_reply_minutes": self.reply_minutes[0]},
            "fixed": {**_rate(self.fixed), "median_reply_minutes": self.reply_minutes[1]},
            "difference": None
            if self.difference is None
            else {
                "estimate": self.difference.estimate,
                "interval": [self.difference.low, self.difference.high],
                "p_value": shown_p(self.difference.p_value),
            },
            "customers": {
                "in_test_period": self.customers,  # "held out" is the holdout group
                "with_history": self.with_history,
                "moved": self.moved,
                "compared": self.compared,
            },
            "sends_placed_by_learning": self.placed_by_learning,
            "model": self.model.as_json(),
        }


def _rate(m: Moments) -> dict[str, Any]:
    interval = wilson(m.total, m.n)
    return {
        "sends": m.n,
        "answered": int(m.total),
        "rate": m.mean,
        "interval": list(interval) if interval else None,
    }


def held_out_period(
    con: duckdb.DuckDBPyConnection, campaign: str, cutoff: datetime | None, until: datetime | None
) -> tuple[datetime, datetime] | None:
    """The held-out period: by default up to just after the campaign's last send, from
    HELD_OUT_DAYS before its end; None when the campaign sent nothing before ``until``."""
    if until is None:
        row = con.execute(
            "SELECT max(sent_at) + INTERVAL 1 SECOND FROM care_actions "
            "WHERE campaign_id = $campaign",
            {"campaign": campaign},
        ).fetchone()
        until = row[0] if row else None
    if until is None:
        return None
    return cutoff or until - timedelta(days=HELD_OUT_DAYS), until


def evaluate_send_time(
    con: duckdb.DuckDBPyConnection, campaign: Campaign, cutoff: datetime, until: datetime
) -> SendTimeEvaluation:
    """The learned hours (from the sends before ``cutoff``) against the campaign's fixed
    time, on its sends from ``cutoff`` until ``until`` (see the module's note)."""
    con.execute(HELD_OUT_SQL, {"campaign": campaign.name, "cutoff": cutoff, "until": until})
    fixed = campaign.fixed_send_time
    model = learn_send_hours(
        con, "send_time_held_out", before=cutoff, hours=campaign.window_hours, fallback=fixed
    )
    row = con.execute(COMPARE_SQL, {"fixed": fixed.hour}).fetchone()
    n_learned, y_learned, n_fixed, y_fixed, compared, *minutes = row or (0, 0, 0, 0, 0, None, None)
    at_learned = Moments(n_learned, float(y_learned), float(y_learned))
    at_fixed = Moments(n_fixed, float(y_fixed), float(y_fixed))
    counts = con.execute(
        "SELECT count(DISTINCT subscriber_id), count(*) FILTER "
        "(send_time_source IN ('learned', 'fallback')) FROM send_time_held_out"
    ).fetchone()
    moved = con.execute(
        "SELECT count(*) FROM send_hours WHERE source = 'learned' AND hour <> $fixed",
        {"fixed": fixed.hour},
    ).fetchone()
    return SendTimeEvaluation(
        campaign=campaign.name,
        cutoff=cutoff,
        until=until,
        fixed_hour=fixed.hour,
        learned=at_learned,
        fixed=at_fixed,
        difference=compare(at_learned, at_fixed, binary=True),
        customers=int(counts[0]) if counts else 0,
        with_history=model.learned,
        moved=int(moved[0]) if moved else 0,
        compared=int(compared),
        placed_by_learning=int(counts[1] or 0) if counts else 0,
        model=model,
        reply_minutes=(_float(minutes[0]), _float(minutes[1])),
    )


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
