"""send_time: learned from stored settled days: the same hours and priors as reading every send
of the year, while a plan reads only the unsettled days' sends however long the history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from campaigns.send_time import (
    CHOOSE_SQL,
    HOUR_CELLS,
    KERNEL,
    LEARNABLE,
    LOCAL_HOUR,
    LOOKBACK_DAYS,
    MIN_GAIN,
    MIN_HOUR_STRENGTH,
    SETTLE_DAYS,
    STORE_CELLS,
    SUBSCRIBER_HASH,
    LearnedHours,
    learn_send_hours,
    prior_strength,
)
from tests.factories import add_subscriber
from tests.test_send_time import CUTOFF, simulate
from warehouse.db import connect

HOURS = list(range(9, 21))

# The learning as it was: every learnable send of the last LOOKBACK_DAYS, per customer and
# hour, joined with the customers each time (the oracle the stored days must agree with).
OLD_CELLS_SQL = f"""
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
OLD_CUSTOMER_CELLS = """
SELECT c.n, c.y, coalesce(s.rate, p.rate) AS mu
FROM send_time_cells c JOIN send_time_pooled p USING (hour)
LEFT JOIN send_time_store_rates s USING (store_id, hour)
"""
OLD_RATES_SQL = """
CREATE OR REPLACE TEMP TABLE send_time_hours AS
SELECT hour, sum(n) AS n, sum(y) AS y FROM send_time_cells GROUP BY hour;
CREATE OR REPLACE TEMP TABLE send_time_stores AS
SELECT store_id, hour, sum(n) AS n, sum(y) AS y FROM send_time_cells
WHERE store_id IS NOT NULL GROUP BY ALL;
"""


def old_learn(con: duckdb.DuckDBPyConnection, members: str, before: datetime) -> LearnedHours:
    con.execute(OLD_CELLS_SQL, {"before": before, "lookback": LOOKBACK_DAYS})
    con.execute(OLD_RATES_SQL)
    k = max(MIN_HOUR_STRENGTH, prior_strength(con, HOUR_CELLS))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE send_time_pooled AS SELECT hour, "
        "(y + $k * (SELECT sum(y) / sum(n) FROM send_time_hours)) / (n + $k) AS rate "
        "FROM send_time_hours",
        {"k": k},
    )
    store = max(MIN_HOUR_STRENGTH, prior_strength(con, STORE_CELLS))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE send_time_store_rates AS "
        "SELECT s.store_id, s.hour, (s.y + $k * p.rate) / (s.n + $k) AS rate "
        "FROM send_time_stores s JOIN send_time_pooled p USING (hour)",
        {"k": store},
    )
    customer = prior_strength(con, OLD_CUSTOMER_CELLS)
    overall = con.execute("SELECT sum(y) / sum(n) FROM send_time_cells").fetchone()
    con.execute(
        CHOOSE_SQL.format(into="old_hours", members=members),
        {"hours": HOURS, "kernel": list(KERNEL), "strength": customer,
         "overall": overall[0] if overall else None, "fallback": 10, "gain": MIN_GAIN},
    )  # fmt: skip
    return LearnedHours(0, 0, store, customer)


def members(con: duckdb.DuckDBPyConnection, share: int) -> None:
    """``wanted``: about one customer in ``share``, and NEW1 (with no history, if added)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE wanted AS SELECT subscriber_id FROM subscribers "
        f"WHERE hash(subscriber_id) % {share} = 0 OR subscriber_id = 'NEW1'"
    )


def hours_of(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, tuple[int, str]]:
    rows = con.execute(f"SELECT subscriber_id, hour, source FROM {table}").fetchall()
    return {s: (h, source) for s, h, source in rows}


def learn(con: duckdb.DuckDBPyConnection, before: datetime) -> LearnedHours:
    return learn_send_hours(con, "wanted", before=before, hours=HOURS, fallback=time(10))


@pytest.mark.parametrize("share", [1, 7])
def test_stored_days_learn_what_every_send_of_the_year_learned(con, settings, share):
    simulate(con, 11, planted=True, customers=3000, later=3)
    add_subscriber(con, "NEW1")
    members(con, share)
    later = CUTOFF + timedelta(days=40)
    learn(con, later)  # stores the days settled by a later cut-off: never read for CUTOFF's
    for _ in range(2):  # the first learning stores CUTOFF's missing days, the second reads them
        found = learn(con, CUTOFF)
        expected = old_learn(con, "wanted", CUTOFF)
        # the customer sample is everyone (3,000 customers): the same cells, the same sums
        assert found.store_strength == pytest.approx(expected.store_strength, rel=1e-9)
        assert found.customer_strength == pytest.approx(expected.customer_strength, rel=1e-9)
        assert 5 < found.customer_strength < 1000
        assert hours_of(con, "send_hours") == hours_of(con, "old_hours")
    assert found.fallback == 1 and hours_of(con, "send_hours")["NEW1"] == (10, "fallback")


def test_the_customer_prior_comes_from_a_fixed_sample_of_customers(con, settings, monkeypatch):
    simulate(con, 15, planted=True, customers=3000, later=0)
    members(con, 50)
    monkeypatch.setattr("campaigns.send_time.CUSTOMER_SAMPLE", 1000)
    found = learn(con, CUTOFF)
    sample = con.execute("SELECT subscriber_id FROM send_time_sample ORDER BY 1").fetchall()
    assert 800 < len(sample) < 1200
    learn(con, CUTOFF)
    assert con.execute("SELECT subscriber_id FROM send_time_sample ORDER BY 1").fetchall() == sample
    # the year's cells of every customer, as before, but the moments of the sample's only
    old_learn(con, "wanted", CUTOFF)
    con.execute("DELETE FROM send_time_cells WHERE subscriber_id NOT IN (FROM send_time_sample)")
    sampled = prior_strength(con, OLD_CUSTOMER_CELLS)
    assert found.customer_strength == pytest.approx(sampled, rel=1e-9)


def test_a_day_is_stored_once_and_only_when_settled(con, settings):
    simulate(con, 12, planted=False, customers=500, later=0)
    members(con, 1)
    for before in (CUTOFF - timedelta(days=30), CUTOFF, CUTOFF, CUTOFF + timedelta(hours=7)):
        learn(con, before)
        last = con.execute("SELECT max(day) FROM send_hour_days_stored").fetchone()
        assert (
            last is not None
            and datetime.combine(last[0], time(), UTC) + timedelta(days=SETTLE_DAYS) <= before
        )
    # every learnable send of the stored days counted once: as many as care_actions holds
    stored = con.execute("SELECT sum(n), count(DISTINCT day) FROM send_hour_days").fetchone()
    sent = con.execute(
        f"SELECT count(*), count(DISTINCT sent_at::DATE) FROM care_actions a WHERE {LEARNABLE} "
        "AND sent_at < $end",
        {"end": CUTOFF - timedelta(days=SETTLE_DAYS - 1)},  # the day after the last settled
    ).fetchone()
    assert stored == sent and sent is not None and sent[0] > 1000
    # every day of the lookbacks, from the earliest cut-off's first to the latest's settled
    first = (CUTOFF - timedelta(days=30 + LOOKBACK_DAYS)).date()
    span = (CUTOFF + timedelta(hours=7) - timedelta(days=SETTLE_DAYS)).date() - first
    days = con.execute("SELECT count(*), count(DISTINCT day) FROM send_hour_days_stored")
    assert days.fetchone() == (span.days + 1,) * 2


class Profiled:
    """A connection that notes, per statement, the rows its scans of care_actions returned
    (after the filters DuckDB pushed into them), from DuckDB's own profile."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.read: list[tuple[int, str]] = []
        con.execute("SET enable_profiling = 'no_output'; SET profiling_coverage = 'ALL'")

    def execute(self, sql: str, *args: object) -> Any:
        result = self._con.execute(sql, *args)
        rows = result.fetchall() if result.description else []
        profile = json.loads(self._con.get_profiling_information(format="json"))
        scans = _care_action_scans(profile["operator"])
        scanned = sum(int(scan["intermediate_rows"]) for scan in scans)
        self.read.append((scanned, " ".join(sql.split())))
        return Rows(rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


class Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchall(self) -> list[Any]:
        return self.rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


def _care_action_scans(operators: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for operator in operators:
        table = operator.get("extra_info", {}).get("Table", "")
        if operator.get("type") == "TABLE_SCAN" and table.endswith(".care_actions"):
            found.append(operator)
        found.extend(_care_action_scans(operator.get("children", [])))
    return found


def outbox_read(path: Path, history_days: int) -> tuple[int, int]:
    """Rows of care_actions a second learning's statements read (the priors and the members'
    own cells), and the unsettled sends, on a warehouse with ``history_days``."""
    con = connect(path)
    try:
        simulate(con, 13, planted=False, customers=400, sends=history_days // 5, later=0)
        con.execute(  # the history's span: the sends spread over history_days before CUTOFF
            "UPDATE care_actions SET sent_at = $cutoff - to_minutes("
            "(hash(action_id) % ($days * 1440))::BIGINT) - INTERVAL 1 MINUTE",
            {"cutoff": CUTOFF, "days": history_days},
        )
        con.execute("CREATE TEMP TABLE wanted AS SELECT 'S1' AS subscriber_id")
        [(own,)] = con.execute(
            "SELECT count(*) FROM care_actions WHERE subscriber_id = 'S1'"
        ).fetchall()
        assert own > 5
        learn(con, CUTOFF)
        profiled = Profiled(con)
        learn(profiled, CUTOFF)  # type: ignore[arg-type]
        unsettled = con.execute(
            f"SELECT count(*) FROM care_actions a WHERE {LEARNABLE} AND sent_at >= $from",
            {"from": CUTOFF - timedelta(days=SETTLE_DAYS - 1)},
        ).fetchone()
        # the members' own sends too (send_time_cells: the posterior and the customer
        # prior's sample) come from the stored days but for the unsettled ones
        learning = sum(n for n, _ in profiled.read)
        return learning, int(unsettled[0]) if unsettled else 0
    finally:
        con.close()


def test_a_plan_reads_only_the_unsettled_sends_however_long_the_history(tmp_path, settings):
    short, unsettled_short = outbox_read(tmp_path / "short.duckdb", 60)
    long, unsettled_long = outbox_read(tmp_path / "long.duckdb", 300)
    # the sends per day are alike (about 400 x 60 / 5 / 60 = 80 a day in both)
    assert unsettled_short == pytest.approx(unsettled_long, rel=0.25)
    # the unsettled sends and no more, read once for both the priors and the members' own
    # cells (each read them before)
    assert short == unsettled_short and long == unsettled_long
    assert long < 20 * 300 * 80 // 100  # a fraction of the 24,000 sends of the long history


def test_a_read_only_judge_learns_without_storing(tmp_path, settings):
    path = tmp_path / "w.duckdb"
    con = connect(path)
    simulate(con, 14, planted=True, customers=800, later=0)
    members(con, 3)
    learn(con, CUTOFF - timedelta(days=20))
    stored = con.execute("SELECT count(*) FROM send_hour_days_stored").fetchone()
    con.close()
    reader = duckdb.connect(str(path), read_only=True)
    reader.execute("SET TimeZone = 'UTC'")
    members(reader, 3)
    found = learn(reader, CUTOFF)  # days settled since are missing: kept in a temp table
    expected = old_learn(reader, "wanted", CUTOFF)
    assert found.customer_strength == pytest.approx(expected.customer_strength, rel=1e-9)
    assert hours_of(reader, "send_hours") == hours_of(reader, "old_hours")
    assert reader.execute("SELECT count(*) FROM send_hour_days_stored").fetchone() == stored
    reader.close()


def test_a_stored_day_keeps_its_stores_and_its_ratings_within_the_settling_days(con, settings):
    simulate(con, 16, planted=False, customers=300, later=0)
    members(con, 1)
    learn(con, CUTOFF)
    before = con.execute("SELECT * FROM send_hour_days ORDER BY ALL").fetchall()
    stores = con.execute("SELECT * FROM send_time_stores ORDER BY ALL").fetchall()
    # the New York customers move to the first store; an old send is rated 20 days on
    con.execute("UPDATE subscribers SET home_store_id = 'ST1' WHERE home_store_id = 'ST2'")
    late = con.execute(
        "SELECT action_id, subscriber_id, sent_at FROM care_actions a WHERE sent_at < $end "
        "AND action_id NOT IN (SELECT action_id FROM latest_ratings) LIMIT 1",
        {"end": CUTOFF - timedelta(days=60)},
    ).fetchone()
    assert late is not None
    con.execute(
        "INSERT INTO latest_ratings (action_id, evaluation_id, subscriber_id, campaign_id, "
        "round, store_id, channel, score, comment, received_at) VALUES "
        "(?, 'late', ?, 'birthday', 1, NULL, 'sms', 5, NULL, ?)",
        [late[0], late[1], late[2] + timedelta(days=20)],
    )
    learn(con, CUTOFF)
    assert con.execute("SELECT * FROM send_hour_days ORDER BY ALL").fetchall() == before
    settled = con.execute("SELECT * FROM send_time_stores ORDER BY ALL").fetchall()
    # only the unsettled days' sends of the New York customers moved to the first store
    assert {s for s, *_ in settled} == {"ST1", "ST2"} and settled != stores
    assert sum(n for _, _, n, _ in settled) == sum(n for _, _, n, _ in stores)
    assert sum(y for *_, y in settled) == sum(y for *_, y in stores)  # the late one not counted


def test_a_rebuilt_demo_past_forgets_the_stored_days(con, settings):
    from demo.data import build_demo_data

    as_of = CUTOFF.date()
    build_demo_data(con, subscribers=400, seed=3, until=as_of, history_before=as_of)
    members(con, 1)
    learn(con, CUTOFF)
    assert con.execute("SELECT sum(n) FROM send_hour_days").fetchone() != (None,)
    build_demo_data(con, subscribers=400, seed=4, until=as_of, history_before=as_of)
    assert con.execute("SELECT count(*) FROM send_hour_days_stored").fetchone() == (0,)
    members(con, 1)
    found = learn(con, CUTOFF)
    expected = old_learn(con, "wanted", CUTOFF)
    assert found.customer_strength == pytest.approx(expected.customer_strength, rel=1e-9)
    assert hours_of(con, "send_hours") == hours_of(con, "old_hours")


def test_a_customers_settled_sends_are_read_as_stored_not_from_the_outbox(con, settings):
    simulate(con, 17, planted=True, customers=300, later=0)
    members(con, 1)
    learn(con, CUTOFF)
    cells = con.execute("SELECT * FROM send_time_cells ORDER BY ALL").fetchall()
    # the outbox's settled sends go (as if archived): the stored days still say the same
    con.execute(
        "DELETE FROM care_actions WHERE sent_at < $settled",
        {"settled": CUTOFF - timedelta(days=SETTLE_DAYS - 1)},
    )
    learn(con, CUTOFF)
    assert con.execute("SELECT * FROM send_time_cells ORDER BY ALL").fetchall() == cells
    assert len(cells) > 300


def stop_halfway(con: duckdb.DuckDBPyConnection) -> Any:
    """As a run left the next missing day when it stopped before marking it stored: its sends
    and store-hour rows written (here every send answered, so that a day read twice shows)."""
    [(day,)] = con.execute(
        f"SELECT min(a.sent_at::DATE) FROM care_actions a WHERE {LEARNABLE} "
        "AND a.sent_at::DATE > (SELECT max(day) FROM send_hour_days_stored)"
    ).fetchall()
    con.execute(
        "INSERT INTO send_hour_sends SELECT $day, coalesce(s.home_store_id, ''), "
        f"{SUBSCRIBER_HASH.format(id='a.subscriber_id')}, {LOCAL_HOUR}, true "
        f"FROM care_actions a JOIN subscribers s USING (subscriber_id) "
        f"WHERE {LEARNABLE} AND a.sent_at::DATE = $day",
        {"day": day},
    )
    con.execute(
        "INSERT INTO send_hour_days SELECT day, store_id, hour, count(*), count(*) "
        "FROM send_hour_sends WHERE day = $day GROUP BY ALL",
        {"day": day},
    )
    return day


def test_a_day_whose_storing_stopped_halfway_is_stored_once(con, settings):
    simulate(con, 18, planted=False, customers=300, later=0)
    members(con, 1)
    learn(con, CUTOFF - timedelta(days=1))
    stored = con.execute("SELECT count(*) FROM send_hour_sends").fetchone()
    day = stop_halfway(con)
    learn(con, CUTOFF)
    sent = con.execute(
        f"SELECT count(*) FROM care_actions a WHERE {LEARNABLE} AND sent_at::DATE = $day",
        {"day": day},
    ).fetchone()
    again = con.execute("SELECT count(*) FROM send_hour_sends WHERE day = $day", {"day": day})
    assert again.fetchone() == sent and sent is not None and sent[0] > 0
    summed = con.execute(
        "SELECT sum(n), sum(y) FROM send_hour_days WHERE day = $day", {"day": day}
    ).fetchall()
    counted = con.execute(
        "SELECT count(*), count_if(answered) FROM send_hour_sends WHERE day = $day", {"day": day}
    ).fetchall()
    assert summed == counted
    assert stored is not None and stored[0] > 1000


def test_a_read_only_learning_leaves_out_what_a_stopped_run_left(tmp_path, settings):
    path = tmp_path / "w.duckdb"
    con = connect(path)
    simulate(con, 19, planted=True, customers=800, later=0)
    learn_at = CUTOFF - timedelta(days=20)
    members(con, 3)
    learn(con, learn_at)
    stop_halfway(con)
    con.close()
    reader = duckdb.connect(str(path), read_only=True)
    reader.execute("SET TimeZone = 'UTC'")
    members(reader, 3)
    found = learn(reader, CUTOFF)
    sums = "SELECT sum(n), sum(y) FROM {}"
    read = [
        reader.execute(sums.format(t)).fetchall() for t in ("send_time_cells", "send_time_stores")
    ]
    expected = old_learn(reader, "wanted", CUTOFF)  # every customer's cells: the sample's here
    assert read == [reader.execute(sums.format("send_time_cells")).fetchall()] * 2
    assert found.store_strength == pytest.approx(expected.store_strength, rel=1e-9)
    assert found.customer_strength == pytest.approx(expected.customer_strength, rel=1e-9)
    assert hours_of(reader, "send_hours") == hours_of(reader, "old_hours")
    reader.close()


@pytest.mark.usefixtures("prefect_harness")
def test_collect_stores_the_day_settled_overnight_for_the_morning_plan(settings):
    """Collect stores the settled days a learning would (flows/collect_feedback.py), so the
    morning's first plan stores none and learns the same hours; where no learning ever ran,
    collect stores nothing."""
    from flows.collect_feedback import collect_feedback

    con = connect(settings.warehouse_path)
    simulate(con, 17, planted=True, customers=600, later=0)
    con.close()
    evening = CUTOFF - timedelta(hours=10)  # 14:00 UTC, 22:00 in Shanghai
    assert collect_feedback(home=str(settings.home), now=evening)["send_hour_days_stored"] == 0
    con = connect(settings.warehouse_path)
    assert con.execute("SELECT count(*) FROM send_hour_days_stored").fetchone() == (0,)
    members(con, 3)
    learn(con, evening - timedelta(days=3))  # a plan three days before: learning is in use
    con.close()
    figures = collect_feedback(home=str(settings.home), now=evening)
    assert figures["send_hour_days_stored"] == 3  # the three days settled since that plan
    con = connect(settings.warehouse_path)
    members(con, 3)
    stored = con.execute("SELECT * FROM send_hour_days ORDER BY ALL").fetchall()
    morning = evening + timedelta(hours=9)  # 07:00 in Shanghai, the same UTC day
    profiled = Profiled(con)
    learn(profiled, morning)  # type: ignore[arg-type]
    # nothing left to store: the plan read no settled day's sends from the outbox
    assert not [sql for _, sql in profiled.read if "INSERT INTO send_hour_sends" in sql]
    assert con.execute("SELECT * FROM send_hour_days ORDER BY ALL").fetchall() == stored
    expected = old_learn(con, "wanted", morning)
    assert hours_of(con, "send_hours") == hours_of(con, "old_hours")
    assert learn(con, morning).customer_strength == pytest.approx(
        expected.customer_strength, rel=1e-9
    )
    con.close()
