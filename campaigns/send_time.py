"""``send_time: learned``: each customer's best local hour, learned from their past replies.

The estimate is empirical Bayes in three levels, set-based in DuckDB over every customer at once:

- the pooled pattern: the response rate of every sent survey by the local hour it went at,
  shrunk toward the overall rate (by at least MIN_HOUR_STRENGTH sends: two lucky sends at a
  rare hour do not make it every store's best);
- each store's pattern (its customers by home store), shrunk toward the pooled one;
- each customer's rate at each hour, a Beta-Binomial posterior whose prior is their store's
  rate at that hour, with a weight of ``strength`` pseudo-sends.

Each prior's strength comes from the data by the method of moments: the spread of the cells'
rates (a store at an hour, a customer at an hour) beyond what binomial noise around the prior
explains is the cells' own variation; little of it means a strong prior. A customer's sends at
neighbouring hours count too, with a smaller weight (``KERNEL``): answering at 19:00 says
something about 20:00. The chosen hour is the posterior's best inside the send window, the
campaign's fixed hour given a head start of MIN_GAIN (another hour must be that much
likelier), so a customer with two replies at an odd hour stays near their store's best hour,
and one with a long history keeps their own. Customers with no history get the campaign's
fixed time. The model has no level per customer: one who rarely answers at the fixed hour is
expected to answer elsewhere at their store's rate there, so is moved, harmless when no hour
is better (the tests with no planted preference) but not a proven gain.

The learning reads only what was sent and not held out: the held-out customers' rows are
never read, and the planner never moves a held-out customer (see ``plan_send_times``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import duckdb

from campaigns.spec import Campaign

# A send's weight at 0, 1 and 2 hours from the hour being estimated (a Gaussian, sd 1 hour).
KERNEL = (1.0, 0.6, 0.15)
# Bounds on a prior's weight in pseudo-sends: a customer's one send never outweighs their
# store's pattern, and no prior is so strong that a long history cannot move it.
MIN_STRENGTH, MAX_STRENGTH = 2.0, 1000.0
# The pooled hours' prior (the overall rate) and a store's (the pooled hour) weigh at least
# this many sends: an hour the exploration share reached a few times is no better than any
# other until it has the sends to show it (with few cells the moments alone cannot tell).
MIN_HOUR_STRENGTH = 100.0
# A customer leaves the campaign's fixed hour only for an hour at least this much likelier
# to be answered: a hair's edge is noise, and the fixed hour is what the campaign chose.
MIN_GAIN = 0.02
# How far back the learning reads: habits change, and a plan's cost stays a year's sends
# however long the history grows (a range on sent_at that DuckDB's zone maps answer).
LOOKBACK_DAYS = 365

# A send the learning (and its judge, insights/send_time.py) may read: a first-round survey
# that was sent, never a held-out customer's row. On ``care_actions a``.
LEARNABLE = "a.round = 1 AND a.survey AND a.status <> 'held_out' AND a.suppression_reason IS NULL"
# Sends the learning may read, per customer and local hour: sent first-round surveys of the
# last LOOKBACK_DAYS that were not held out; answered = rated before the cut-off (no peeking
# at later replies).
CELLS_SQL = f"""
CREATE OR REPLACE TEMP TABLE send_time_cells AS
SELECT a.subscriber_id, any_value(s.home_store_id) AS store_id,
    hour(timezone(coalesce(a.timezone, s.timezone), a.sent_at)) AS hour,
    count(*) AS n, count(r.action_id) AS y
FROM care_actions a
JOIN subscribers s USING (subscriber_id)
LEFT JOIN latest_ratings r ON r.action_id = a.action_id AND r.received_at < $before
WHERE a.sent_at < $before AND a.sent_at >= $before - to_days($lookback) AND {LEARNABLE}
GROUP BY ALL
"""
RATES_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_hours AS
SELECT hour, sum(n) AS n, sum(y) AS y FROM send_time_cells GROUP BY hour;
CREATE OR REPLACE TEMP TABLE send_time_stores AS
SELECT store_id, hour, sum(n) AS n, sum(y) AS y FROM send_time_cells
WHERE store_id IS NOT NULL GROUP BY ALL;
"""
HOUR_CELLS = """
SELECT n, y, (SELECT sum(y) / sum(n) FROM send_time_hours) AS mu FROM send_time_hours
"""
STORE_CELLS = """
SELECT s.n, s.y, p.rate AS mu FROM send_time_stores s JOIN send_time_pooled p USING (hour)
"""
CUSTOMER_CELLS = """
SELECT c.n, c.y, coalesce(s.rate, p.rate) AS mu
FROM send_time_cells c JOIN send_time_pooled p USING (hour)
LEFT JOIN send_time_store_rates s USING (store_id, hour)
"""
# The posterior of every customer with history at every hour of the window; the best one.
CHOOSE_SQL = """
CREATE OR REPLACE TEMP TABLE {into} AS
WITH hours AS (SELECT unnest($hours::INT[]) AS hour),
kernel AS (SELECT generate_subscripts($kernel::DOUBLE[], 1) - 1 AS d, unnest($kernel) AS w),
wanted AS (
    SELECT DISTINCT m.subscriber_id, s.home_store_id AS store_id
    FROM {members} m JOIN subscribers s USING (subscriber_id)
), history AS (
    SELECT c.* FROM send_time_cells c SEMI JOIN wanted USING (subscriber_id)
), sends AS (
    SELECT subscriber_id, sum(n)::INT AS sends FROM history GROUP BY ALL
), smoothed AS (
    SELECT c.subscriber_id, h.hour, sum(k.w * c.n) AS n, sum(k.w * c.y) AS y
    FROM history c JOIN hours h ON abs(c.hour - h.hour) < len($kernel)
    JOIN kernel k ON k.d = abs(c.hour - h.hour)
    GROUP BY ALL
), posterior AS (
    SELECT w.subscriber_id, h.hour, x.sends,
        (coalesce(m.y, 0) + $strength * coalesce(sr.rate, p.rate, $overall))
            / (coalesce(m.n, 0) + $strength) AS rate
    FROM wanted w JOIN sends x USING (subscriber_id) CROSS JOIN hours h
    LEFT JOIN smoothed m ON m.subscriber_id = w.subscriber_id AND m.hour = h.hour
    LEFT JOIN send_time_store_rates sr ON sr.store_id = w.store_id AND sr.hour = h.hour
    LEFT JOIN send_time_pooled p ON p.hour = h.hour
)
SELECT subscriber_id, hour, 'learned' AS source, sends, rate FROM posterior
-- the fixed hour keeps a head start of $gain: another hour must beat it by that much
QUALIFY row_number() OVER (
    PARTITION BY subscriber_id
    ORDER BY rate + CASE WHEN hour = $fallback THEN $gain ELSE 0 END DESC,
        abs(hour - $fallback), hour) = 1
UNION ALL
SELECT subscriber_id, $fallback, 'fallback', 0, NULL FROM wanted
WHERE subscriber_id NOT IN (SELECT subscriber_id FROM sends)
"""


@dataclass(frozen=True)
class LearnedHours:
    """One learning run: how many customers got a learned hour and the priors' strengths."""

    learned: int
    fallback: int
    store_strength: float  # pseudo-sends of the pooled pattern behind a store's
    customer_strength: float  # pseudo-sends of the store's pattern behind a customer's

    def as_json(self) -> dict[str, Any]:
        return {
            "learned": self.learned,
            "fallback": self.fallback,
            "store_prior_strength": round(self.store_strength, 2),
            "customer_prior_strength": round(self.customer_strength, 2),
        }


def learn_send_hours(
    con: duckdb.DuckDBPyConnection, members: str, *, before: datetime, hours: list[int],
    fallback: time, into: str = "send_hours",
) -> LearnedHours:  # fmt: skip
    """``into``: the best of ``hours`` for each subscriber in the table ``members``, from the
    sends before ``before`` (columns subscriber_id, hour, source, sends, rate)."""
    con.execute(CELLS_SQL, {"before": before, "lookback": LOOKBACK_DAYS})
    con.execute(RATES_SQL)
    hour_strength = max(MIN_HOUR_STRENGTH, prior_strength(con, HOUR_CELLS))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE send_time_pooled AS SELECT hour, "
        "(y + $k * (SELECT sum(y) / sum(n) FROM send_time_hours)) / (n + $k) AS rate "
        "FROM send_time_hours",
        {"k": hour_strength},
    )
    store_strength = max(MIN_HOUR_STRENGTH, prior_strength(con, STORE_CELLS))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE send_time_store_rates AS "
        "SELECT s.store_id, s.hour, (s.y + $k * p.rate) / (s.n + $k) AS rate "
        "FROM send_time_stores s JOIN send_time_pooled p USING (hour)",
        {"k": store_strength},
    )
    customer_strength = prior_strength(con, CUSTOMER_CELLS)
    overall = con.execute("SELECT sum(y) / sum(n) FROM send_time_cells").fetchone()
    con.execute(
        CHOOSE_SQL.format(into=into, members=members),
        {
            "hours": hours,
            "kernel": list(KERNEL),
            "strength": customer_strength,
            "overall": overall[0] if overall else None,
            "fallback": fallback.hour,
            "gain": MIN_GAIN,
        },
    )
    counts = dict(con.execute(f"SELECT source, count(*) FROM {into} GROUP BY ALL").fetchall())
    return LearnedHours(
        counts.get("learned", 0), counts.get("fallback", 0), store_strength, customer_strength
    )


def prior_strength(con: duckdb.DuckDBPyConnection, cells: str) -> float:
    """A Beta prior's weight in pseudo-sends, by the method of moments, from cells (n sends,
    y answered) around their prior means mu. Under a Beta-Binomial whose intra-class
    correlation is rho = 1 / (strength + 1), the sum of (y - n mu)^2 / n has the expectation
    sum of mu (1 - mu) (1 + (n - 1) rho): solved for rho, bounded (MIN_STRENGTH, MAX_STRENGTH)."""
    row = con.execute(
        f"SELECT sum((y - n * mu) ** 2 / n - mu * (1 - mu)), sum(mu * (1 - mu) * (n - 1)) "
        f"FROM ({cells}) WHERE mu > 0 AND mu < 1"
    ).fetchone()
    excess, room = (row or (None, None))[:2]
    if not room or excess is None or excess <= 0:
        return MAX_STRENGTH  # no variation beyond noise: the prior decides
    rho = excess / room
    return float(min(MAX_STRENGTH, max(MIN_STRENGTH, (1 - rho) / rho)))


def plan_send_times(
    con: duckdb.DuckDBPyConnection, campaign: Campaign, members: str, *, before: datetime,
    held_out: str, params: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """``plan_send_times``: each action's local send time (column send_time) and where it came
    from (send_time_source: learned, fallback, explore; NULL for the fixed time). ``members``
    has action_id, subscriber_id and due_at; ``held_out`` is the planner's holdout condition
    (with ``params``): those members keep the fixed time, as do members with a due time."""
    fixed = campaign.fixed_send_time
    if not campaign.learns_send_time:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE plan_send_times AS SELECT action_id, "
            f"$fixed::TIME AS send_time, NULL::VARCHAR AS send_time_source FROM {members}",
            {"fixed": fixed},
        )
        return {}
    hours = campaign.window_hours
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE send_time_members AS
        SELECT action_id, subscriber_id, CASE
            WHEN due_at IS NOT NULL OR ({held_out}) THEN 'fixed'
            WHEN md5_number(action_id || '|explore') % 10000 < $explore THEN 'explore'
            ELSE 'learn' END AS way
        FROM {members}""",
        {**params, "explore": round(campaign.send_time_explore_percent * 100)},
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW send_time_learners AS "
        "SELECT subscriber_id FROM send_time_members WHERE way = 'learn'"
    )
    learned = learn_send_hours(
        con, "send_time_learners", before=before, hours=hours, fallback=fixed
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE plan_send_times AS
        SELECT m.action_id, CASE m.way
            -- kept at the fixed hour: the fixed time itself (10:30 stays 10:30)
            WHEN 'learn' THEN CASE WHEN h.source = 'learned' AND h.hour <> hour($fixed::TIME)
                                   THEN make_time(h.hour, 0, 0) ELSE $fixed::TIME END
            -- a uniformly random hour of the window: what keeps the comparison honest
            WHEN 'explore' THEN make_time($hours[
                (1 + md5_number_lower(m.action_id || '|hour') % len($hours))::BIGINT], 0, 0)
            ELSE $fixed::TIME END AS send_time,
            CASE m.way WHEN 'learn' THEN h.source WHEN 'explore' THEN 'explore' END
                AS send_time_source
        FROM send_time_members m LEFT JOIN send_hours h USING (subscriber_id)""",
        {"hours": hours, "fixed": fixed},
    )
    return {"send_time": learned.as_json()}
