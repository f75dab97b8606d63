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

What a learning reads, so that its cost does not grow with the history: a day's learnable sends
are stored once the day is settled (SETTLE_DAYS after it began, by the learning's cut-off), one
row each in send_hour_sends (the customer as a hash of the id, home store, local hour, answered)
and summed by home store and hour in send_hour_days; the unsettled days' sends are read from
care_actions as they are. A learning first stores the settled days of its lookback that are
missing (send_hour_days_stored lists the stored days, empty ones included), so a plan reads
about SETTLE_DAYS of raw sends. The pooled and store patterns come from send_hour_days; the
customers' own cells (the members' for the posterior, and a fixed random sample of
CUSTOMER_SAMPLE customers for the customer prior's strength, every customer when there are
fewer) from send_hour_sends: a year of a narrow log's numbers, not of the outbox's rows.

Facts a stored day freezes: the home store each customer had when the day was stored (a later
move does not carry their past sends to the new store's pattern; a customer's own cells take
their current store's), the local hour of a send that names no timezone (rows from before the
outbox kept one: the customer's zone then), and the ratings received within SETTLE_DAYS of the
day's start (later ones, or ones collected later, are not counted). A backfill of older sends
must delete the days it touches from the three tables. The lookback is whole UTC days (up to
a day more than LOOKBACK_DAYS x 24 hours). A learning with a past cut-off (the judge,
insights/send_time.py) reads only the days settled by its cut-off, and on a read-only
connection keeps the missing days in temp tables instead of storing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import duckdb

from campaigns.spec import Campaign
from warehouse.db import is_writable

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
# How far back the learning reads: habits change (whole UTC days; the stored days' range).
LOOKBACK_DAYS = 365
# A day's sends are settled, and stored in send_hour_days, this long after the day began: a
# rating link is valid 14 days (core.tokens.RATING_LINK_LIFETIME) from a send as late as the day's
# end, and collect lands a rating within a day. Ratings that come later are not counted.
SETTLE_DAYS = 16
# The customers whose cells estimate the customer prior's strength: every customer's cost a
# year of sends. Where customers barely differ the estimate is noisy near its bound (on 1
# million customers with 90 days, disjoint samples of 250,000 gave 163 to 1000, of 100,000
# 98 to 1000, all of them 1000): enough to move few customers' hours.
CUSTOMER_SAMPLE = 250_000

# A send the learning (and its judge, insights/send_time.py) may read: a first-round survey
# that was sent, never a held-out customer's row. On ``care_actions a``.
LEARNABLE = "a.round = 1 AND a.survey AND a.status <> 'held_out' AND a.suppression_reason IS NULL"
# A customer as send_hour_sends keeps them: a stable hash of the id (md5's lower 64 bits: DuckDB's
# own hash may change between versions). Two of 10 million customers share one with odds of
# about 3 in a million, and would then share their settled sends' cells: harmless.
SUBSCRIBER_HASH = "md5_number_lower({id})"
# A send's local hour (the action's timezone, else the customer's); ``subscribers s``.
# Every read below joins the ratings from the first send it reads on: a rating comes after its
# send, and the bound lets zone maps skip the ratings of the history before.
LOCAL_HOUR = "hour(timezone(coalesce(a.timezone, s.timezone), a.sent_at))"
# The settled days of the lookback not stored yet (campaigns' days are UTC days of sent_at).
MISSING_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_missing_days AS
SELECT d::DATE AS day FROM generate_series($first::DATE, $last::DATE, INTERVAL 1 DAY) t(d)
WHERE d::DATE NOT IN (SELECT day FROM send_hour_days_stored)
"""
# Those days' sends, one row each: the customer (by a hash of the id), their home store, the
# local hour, and whether it was rated within SETTLE_DAYS of the day's start (before the
# cut-off, as the day is settled): one statement for all of them. Kept in send_hour_sends, the
# customers' own cells come from a narrow column of numbers, not from a year of the outbox's
# rows (4 to 8 s a plan at 10 million subscribers with a year, 0.3 to 0.6 s from here).
NEW_SENDS_SQL = f"""
SELECT timezone('UTC', a.sent_at)::DATE AS day, coalesce(s.home_store_id, '') AS store_id,
    {SUBSCRIBER_HASH.format(id="a.subscriber_id")} AS subscriber_hash, {LOCAL_HOUR} AS hour,
    r.action_id IS NOT NULL AS answered
FROM care_actions a
JOIN subscribers s USING (subscriber_id)
LEFT JOIN latest_ratings r ON r.action_id = a.action_id AND r.received_at >= $start
    AND timezone('UTC', r.received_at) < timezone('UTC', a.sent_at)::DATE + to_days($settle)
WHERE a.sent_at >= $start AND a.sent_at < $end AND {LEARNABLE}
    AND timezone('UTC', a.sent_at)::DATE IN (SELECT day FROM send_time_missing_days)
"""
# A missing day has nothing stored, but a run that stopped before marking the day stored
# left some of its rows: they go first, so a day is stored once without a transaction, and
# a read-only learning leaves them out (OUTSIDE_MISSING).
UNSTORE_SQL = """
DELETE FROM {table} WHERE day >= $first AND day <= $last
    AND day IN (SELECT day FROM send_time_missing_days)
"""
OUTSIDE_MISSING = (
    "(SELECT * FROM {table} WHERE day NOT IN (SELECT day FROM send_time_missing_days))"
)
# The missing days by home store and local hour, from their sends (stored, or kept aside).
NEW_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_new_days AS
SELECT day, store_id, hour, count(*) AS n, count_if(answered) AS y FROM {sends}
WHERE day >= $first AND day <= $last AND day IN (SELECT day FROM send_time_missing_days)
GROUP BY ALL
"""
# In day order: the lookback's range on day is then answered by the zone maps (the table keeps
# every day it stored, for the judge's past cut-offs).
STORE_DAYS_SQL = """
INSERT INTO send_hour_days SELECT day, store_id, hour, n, y FROM send_time_new_days
ORDER BY day, store_id, hour
ON CONFLICT (day, store_id, hour) DO NOTHING;
INSERT INTO send_hour_days_stored
SELECT m.day, coalesce(sum(d.n), 0) FROM send_time_missing_days m
LEFT JOIN send_time_new_days d USING (day) GROUP BY m.day
ON CONFLICT (day) DO NOTHING;
"""
# The unsettled days' sends, read from the outbox as they are, once a learning: each with its
# customer's home store ('' for none), local hour and whether it was rated before the cut-off
# (no peeking). Both the store patterns and the customers' cells read them; each reading its
# own joined the customers (all of them, for the stores) and cost a learning at 10 million
# subscribers with a year 0.1-0.2 s more.
LIVE_SENDS_SQL = f"""
CREATE OR REPLACE TEMP TABLE send_time_live AS
SELECT a.subscriber_id, coalesce(s.home_store_id, '') AS store_id, {LOCAL_HOUR} AS hour,
    r.action_id IS NOT NULL AS answered
FROM care_actions a
JOIN subscribers s USING (subscriber_id)
LEFT JOIN latest_ratings r ON r.action_id = a.action_id AND r.received_at < $before
    AND r.received_at >= $live
WHERE a.sent_at >= $live AND a.sent_at < $before AND {LEARNABLE}
"""
# Sends per home store ('' for none) and local hour of the lookback: the stored settled days
# and the unsettled ones (send_time_live).
STORE_HOURS_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_store_hours AS
SELECT store_id, hour, sum(n) AS n, sum(y) AS y FROM (
    SELECT store_id, hour, n, y FROM {days} WHERE day >= $first AND day <= $last
    UNION ALL
    SELECT store_id, hour, 1 AS n, answered::INT AS y FROM send_time_live
)
GROUP BY ALL
"""
RATES_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_hours AS
SELECT hour, sum(n) AS n, sum(y) AS y FROM send_time_store_hours GROUP BY hour;
CREATE OR REPLACE TEMP TABLE send_time_stores AS
SELECT store_id, hour, n, y FROM send_time_store_hours WHERE store_id <> '';
"""
# A fixed random sample of every customer (a hash of the id): whose cells estimate the customer
# prior's strength. Not the members: a day's members (born on a date, joined on one) are not a
# random draw of the customers' histories, and every campaign of a day gets the same prior.
SAMPLE_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_sample AS
SELECT subscriber_id FROM subscribers WHERE hash(subscriber_id) % 1000000 < $share
"""
# The members and the sample, with the hash their settled sends are kept under.
WANTED_SQL = f"""
CREATE OR REPLACE TEMP TABLE send_time_wanted AS
SELECT DISTINCT subscriber_id, {SUBSCRIBER_HASH.format(id="subscriber_id")} AS subscriber_hash
FROM (SELECT subscriber_id FROM {{members}} UNION ALL SELECT subscriber_id FROM send_time_sample)
"""
# Their sends per local hour over the lookback: the settled days' from send_hour_sends, the
# unsettled days' from send_time_live.
CELLS_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_cells AS
WITH sends AS (
    SELECT w.subscriber_id, d.hour, d.answered
    FROM {sends} d JOIN send_time_wanted w USING (subscriber_hash)
    WHERE d.day >= $first AND d.day <= $last
    UNION ALL
    SELECT l.subscriber_id, l.hour, l.answered
    FROM send_time_live l SEMI JOIN send_time_wanted w USING (subscriber_id)
)
SELECT x.subscriber_id, any_value(s.home_store_id) AS store_id, x.hour,
    count(*) AS n, count_if(x.answered) AS y
FROM sends x JOIN subscribers s USING (subscriber_id)
GROUP BY x.subscriber_id, x.hour
"""
HOUR_CELLS = """
SELECT n, y, (SELECT sum(y) / sum(n) FROM send_time_hours) AS mu FROM send_time_hours
"""
STORE_CELLS = """
SELECT s.n, s.y, p.rate AS mu FROM send_time_stores s JOIN send_time_pooled p USING (hour)
"""
CUSTOMER_CELLS = """
SELECT c.n, c.y, coalesce(s.rate, p.rate) AS mu
FROM send_time_cells c SEMI JOIN send_time_sample USING (subscriber_id)
JOIN send_time_pooled p USING (hour)
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
    window = Lookback.before(before)
    settled = store_settled_days(con, window)
    con.execute(LIVE_SENDS_SQL, {"live": window.live_start, "before": window.cutoff})
    con.execute(
        STORE_HOURS_SQL.format(days=settled.days),
        {"first": window.first, "last": window.last_settled},
    )
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
    customer_cells(con, members, window, settled.sends)
    con.execute("DROP TABLE send_time_live")  # up to weeks of sends: not kept for the plan
    customer_strength = prior_strength(con, CUSTOMER_CELLS)
    overall = con.execute("SELECT sum(y) / sum(n) FROM send_time_hours").fetchone()
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


@dataclass(frozen=True)
class Lookback:
    """The days a learning reads, in UTC: from ``first`` (LOOKBACK_DAYS before the cut-off,
    whole days) to ``last_settled`` as stored (send_hour_days, send_hour_sends), then the live
    sends to the cut-off."""

    cutoff: datetime
    first: date
    last_settled: date  # the last day with day + SETTLE_DAYS <= cutoff

    @classmethod
    def before(cls, cutoff: datetime) -> Lookback:
        utc = (cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)).astimezone(UTC)
        return cls(
            utc,
            (utc - timedelta(days=LOOKBACK_DAYS)).date(),
            (utc - timedelta(days=SETTLE_DAYS)).date(),
        )

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def live_start(self) -> datetime:
        return max(self.start, datetime.combine(self.last_settled, time(), UTC) + timedelta(1))


@dataclass(frozen=True)
class Settled:
    """Where a learning reads the lookback's settled days from: by store and hour (``days``)
    and send by send (``sends``), each a relation name or a subquery."""

    days: str
    sends: str


def store_settled_days(con: duckdb.DuckDBPyConnection, window: Lookback) -> Settled:
    """Store the lookback's settled days that are not stored yet, in one pass over their sends. A
    read-only connection (a judge on a copy) keeps them in temp tables instead, read along
    with the stored ones."""
    con.execute(MISSING_DAYS_SQL, {"first": window.first, "last": window.last_settled})
    row = con.execute("SELECT min(day), max(day) FROM send_time_missing_days").fetchone()
    first, last = row if row else (None, None)
    stored = Settled("send_hour_days", "send_hour_sends")
    if first is None or last is None:
        return stored
    # the sends of the missing days only: a range on sent_at that the zone maps answer
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last, time(), UTC) + timedelta(1)
    sends = {"settle": SETTLE_DAYS, "start": start, "end": end}
    days = {"first": first, "last": last}
    if not is_writable(con):
        con.execute(f"CREATE OR REPLACE TEMP TABLE send_time_new_sends AS {NEW_SENDS_SQL}", sends)
        con.execute(NEW_DAYS_SQL.format(sends="send_time_new_sends"), days)
        days_kept = OUTSIDE_MISSING.format(table="send_hour_days")
        sends_kept = OUTSIDE_MISSING.format(table="send_hour_sends")
        return Settled(
            f"(SELECT * FROM {days_kept} UNION ALL SELECT * FROM send_time_new_days)",
            f"(SELECT * FROM {sends_kept} UNION ALL SELECT * FROM send_time_new_sends)",
        )
    for table in ("send_hour_sends", "send_hour_days"):
        con.execute(UNSTORE_SQL.format(table=table), days)
    con.execute(f"INSERT INTO send_hour_sends {NEW_SENDS_SQL} ORDER BY day", sends)
    con.execute(NEW_DAYS_SQL.format(sends="send_hour_sends"), days)
    con.execute(STORE_DAYS_SQL)
    return stored


def keep_settled_days(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Store the days settled by ``now`` once a learning has stored some (where no campaign
    learns, nothing is stored); how many days it stored. Collect calls it at every run, so the
    morning's first plan finds the day that settled overnight stored rather than storing it
    itself: the same day by the same rule (a day settles SETTLE_DAYS after it began, and
    collect has landed the ratings received before then), paid by the nightly job."""
    if con.execute("SELECT 1 FROM send_hour_days_stored LIMIT 1").fetchone() is None:
        return 0
    store_settled_days(con, Lookback.before(now))
    row = con.execute("SELECT count(*) FROM send_time_missing_days").fetchone()
    return int(row[0]) if row else 0


def customer_cells(
    con: duckdb.DuckDBPyConnection, members: str, window: Lookback, sends: str
) -> None:
    """``send_time_cells``: the sends per local hour of the members and of a random sample of
    CUSTOMER_SAMPLE customers (``send_time_sample``: the customer prior's strength), the
    settled days' read from ``sends``, the unsettled days' from ``send_time_live``."""
    row = con.execute("SELECT count(*) FROM subscribers").fetchone()
    everyone = int(row[0]) if row else 0
    share = 1_000_000 if everyone <= CUSTOMER_SAMPLE else 1_000_000 * CUSTOMER_SAMPLE // everyone
    con.execute(SAMPLE_SQL, {"share": share})
    con.execute(WANTED_SQL.format(members=members))
    con.execute(CELLS_SQL.format(sends=sends), {"first": window.first, "last": window.last_settled})


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


# What a plan with no member to learn for joins in place of the learned hours.
NO_HOURS = (
    "SELECT NULL::VARCHAR AS subscriber_id, NULL::INTEGER AS hour, NULL::VARCHAR AS source "
    "WHERE false"
)


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
    [(learners,)] = con.execute(
        "SELECT count(*) FROM send_time_members WHERE way = 'learn'"
    ).fetchall()
    if learners:
        learned = learn_send_hours(
            con, "send_time_learners", before=before, hours=hours, fallback=fixed
        ).as_json()
    else:  # each keeps a due time (a complaint's second round) or explores: nothing to learn
        con.execute(f"CREATE OR REPLACE TEMP TABLE send_hours AS {NO_HOURS}")
        learned = {"learned": 0, "fallback": 0}
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
    return {"send_time": learned}
