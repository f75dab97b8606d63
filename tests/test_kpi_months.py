"""The monthly KPIs' moments: placed in business-zone months by their instants (units at 23:30
on a month's last day and 00:30 on the next month's first, Shanghai time), equal to a plain
computation in Python; a closed month read from the warehouse, not recomputed, on every
surface; and a report's live query reading only the months still open."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pytest

from insights.closed_months import CLOSE_AFTER_DAYS, is_closed
from insights.kpis import kpi_moments, shift_month, trend_months
from insights.monthly import build_monthly_report
from insights.targets import Targets
from tests.factories import add_action, add_store, add_subscriber
from tests.test_history_cost import HISTORY, fill_ratings
from warehouse.ratings import rebuild_ratings

ZONE = "Asia/Shanghai"
SHANGHAI = ZoneInfo(ZONE)
SLA, WINDOW = 48, 72
NOW = datetime(2026, 3, 10, tzinfo=UTC)  # January closed (since 1 March), February open


def local(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=SHANGHAI).astimezone(UTC)


# Each unit sits half an hour either side of a month's start in Shanghai (16:00 UTC the day
# before): the same UTC date, two business months.
EDGES = [
    local("2026-01-01", "00:30"), local("2026-01-31", "23:30"), local("2026-02-01", "00:30"),
    local("2026-02-28", "23:30"), local("2026-03-01", "00:30"),
]  # fmt: skip


def edge_world(con: duckdb.DuckDBPyConnection) -> None:
    """Per edge and store: surveys rated 1-5 an hour (or two days) later, one unrated, an
    opt-out within 7 days and one after, and cases contacted, recovered or waiting."""
    add_store(con)
    add_store(con, store_id="ST2", name="二号店", region="North China")
    for n, at in enumerate(EDGES):
        for store in ("ST1", "ST2"):
            for k in range(6):
                action, subscriber = f"A{n}{store}{k}", f"S{n}{store[-1]}{k}"
                add_subscriber(con, subscriber, home_store_id=store)
                add_action(con, action, subscriber, sent_at=at, store_id=store)
                unit(con, action, subscriber, at, k)
    rebuild_ratings(con)


def unit(con: duckdb.DuckDBPyConnection, action: str, subscriber: str, at: datetime, k: int):
    if k < 5:  # rated k+1; the first an hour later, the rest two days later (next month)
        later = at + (timedelta(hours=1) if k == 0 else timedelta(days=2))
        con.execute(
            "INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, "
            "campaign_id, round, store_id, channel, intent, score, attribution, received_at) "
            "SELECT ?, ?, action_id, subscriber_id, campaign_id, 1, store_id, channel, "
            "'rating', ?, 'matched', ? FROM care_actions WHERE action_id = ?",
            [f"e{action}", f"e{action}", k + 1, later, action],
        )
    if k in (1, 5):  # an opt-out 6 days after (counts) or 8 days after (does not)
        con.execute(
            "INSERT INTO opt_outs VALUES (?, 'sms', 'opt_out', ?, 'sms_reply', ?)",
            [subscriber, at + timedelta(days=6 if k == 1 else 8), f"o{action}"],
        )
    if k <= 2:  # a case: contacted in 3 hours and recovered; contacted in 50; never
        contacted = {0: timedelta(hours=3), 1: timedelta(hours=50)}.get(k)
        con.execute(
            "INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, "
            "action_id, score, opened_at, status, contacted_at) "
            "SELECT ?, store_id, subscriber_id, campaign_id, action_id, 1, ?, ?, ? "
            "FROM care_actions WHERE action_id = ?",
            [f"c{action}", at, "recovered" if k == 0 else "open",
             at + contacted if contacted else None, action],
        )  # fmt: skip


def plain_moments(con: duckdb.DuckDBPyConnection, now: datetime) -> dict[tuple, tuple]:
    """The KPIs overall and by store, computed row by row in Python from their definitions:
    each unit's month is its instant's calendar month in Shanghai."""
    cells: dict[tuple, list[float]] = {}

    def add(kpi: str, at: datetime, store: str, value: float) -> None:
        month = at.astimezone(SHANGHAI).strftime("%Y-%m")
        for key in (("overall", None), ("store", store)):
            cells.setdefault((kpi, month, *key), []).append(value)

    rows = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    rated = dict(rows("SELECT action_id, score FROM action_ratings"))
    for received, store, score in rows(
        "SELECT r.received_at, a.store_id, r.score FROM action_ratings r "
        "JOIN care_actions a USING (action_id) WHERE r.round = 1"
    ):
        add("csat", received, store, float(score >= 4))
        add("dissatisfied_rate", received, store, float(score <= 2))
    opt_outs = rows("SELECT subscriber_id, channel, occurred_at FROM opt_outs")
    for action, subscriber, channel, sent, store in rows(
        "SELECT action_id, subscriber_id, channel, sent_at, store_id FROM care_actions"
    ):
        add("response_rate", sent, store, float(action in rated))
        window = [o for o in opt_outs if o[:2] == (subscriber, channel)]
        hit = any(sent <= o[2] < sent + timedelta(days=7) for o in window)
        add("opt_out_rate", sent, store, float(hit))
    for opened, store, status, contacted in rows(
        "SELECT opened_at, store_id, status, contacted_at FROM manager_cases"
    ):
        if status == "recovered" or opened + timedelta(hours=WINDOW) <= now:
            add("recovery_rate", opened, store, float(status == "recovered"))
        if contacted is not None:
            add("time_to_first_contact", opened, store, (contacted - opened).total_seconds() / 3600)
        if contacted is not None or opened + timedelta(hours=SLA) <= now:
            sla_met = contacted is not None and contacted <= opened + timedelta(hours=SLA)
            add("sla_compliance", opened, store, float(sla_met))
    return {cell: (len(v), sum(v), sum(x * x for x in v)) for cell, v in cells.items()}


def moments_of(con: Any, month: str, now: datetime = NOW) -> dict[tuple, tuple]:
    frame = kpi_moments(con, month, ZONE, sla_hours=SLA, now=now, reply_window_hours=WINDOW)
    return {
        (r["kpi"], r["month"], r["scope"], r["key"]): (r["n"], r["total"], r["squares"])
        for r in frame.iter_rows(named=True)
        if r["scope"] in ("overall", "store")
    }


def assert_same(found: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    assert found.keys() == expected.keys()
    for cell, (n, total, squares) in expected.items():
        assert found[cell][0] == n, cell
        assert found[cell][1:] == pytest.approx((total, squares), rel=1e-12), cell


def test_units_half_an_hour_from_a_month_boundary_land_in_their_shanghai_month(con):
    edge_world(con)
    expected = plain_moments(con, NOW)
    shown = {"2026-01", "2026-02"}  # February's report: every scope for it and January
    trend = set(trend_months("2026-02"))
    wanted = {
        c: m for c, m in expected.items() if c[1] in trend and (c[2] == "overall" or c[1] in shown)
    }
    assert ("csat", "2026-01", "overall", None) in wanted  # 00:30 on 1 January is January
    assert wanted[("response_rate", "2026-01", "overall", None)][0] == 2 * 12  # 2 edges x 12
    assert_same(moments_of(con, "2026-02"), wanted)  # January closed: computed and kept
    assert_same(moments_of(con, "2026-02"), wanted)  # January read back from the warehouse
    # January's own report: nothing before it, every scope for it (read back, closed)
    january = {c: m for c, m in expected.items() if c[1] == "2026-01"}
    assert_same(moments_of(con, "2026-01"), january)


def test_a_closed_month_keeps_its_figures_and_the_open_month_follows_its_rows(con):
    edge_world(con)
    before = moments_of(con, "2026-02")
    assert con.execute("SELECT list(month ORDER BY month) FROM kpi_closed_months").fetchone()[
        0
    ] == [
        shift_month("2026-02", -back) for back in range(11, 0, -1)
    ]  # the eleven months before February are closed on 10 March; February is not
    # Late rows for January and February: an unrated January survey, a February one rated 5.
    add_subscriber(con, "LATE1")
    add_action(con, "LATE-JAN", "LATE1", sent_at=local("2026-01-20", "10:00"))
    add_action(con, "LATE-FEB", "LATE1", sent_at=local("2026-02-20", "10:00"))
    unit(con, "LATE-FEB", "LATE1", local("2026-02-20", "10:00"), 4)
    rebuild_ratings(con)
    after = moments_of(con, "2026-02")
    for kpi in ("response_rate", "csat"):
        assert after[(kpi, "2026-01", "overall", None)] == before[(kpi, "2026-01", "overall", None)]
        assert after[(kpi, "2026-01", "store", "ST1")] == before[(kpi, "2026-01", "store", "ST1")]
        assert after[(kpi, "2026-02", "overall", None)][0] == (
            before[(kpi, "2026-02", "overall", None)][0] + 1
        )  # February follows its rows
    # Every surface shows January's one figure: February's report (its last month), its
    # trend, and January's own report, all from the kept month.
    shown = [report(con, m) for m in ("2026-02", "2026-01")]
    february, january = (r.as_json() for r in shown)
    kept = before[("response_rate", "2026-01", "overall", None)]
    last_month = next(r for r in february["kpis"] if r["kpi"] == "response_rate")
    own = next(r for r in january["kpis"] if r["kpi"] == "response_rate")
    assert last_month["previous_n"] == own["n"] == kept[0]
    assert last_month["previous"] == own["value"] == round(kept[1] / kept[0], 4)
    point = next(p for p in shown[0].trends["response_rate"] if p.month == "2026-01")
    assert point.n == kept[0]


def report(con: Any, month: str) -> Any:
    return build_monthly_report(
        con, month, ZONE, now=NOW, sla_hours=SLA, targets=Targets(), lift_days=90,
        reply_window_hours=WINDOW,
    )  # fmt: skip


def test_a_month_is_closed_four_weeks_after_it_ends_in_the_business_zone():
    end = datetime(2026, 2, 1).date()  # January's end
    closing = local("2026-03-01", "00:00")  # 28 days after 1 February, Shanghai
    assert CLOSE_AFTER_DAYS == 28
    assert not is_closed(end, ZONE, closing - timedelta(seconds=1))
    assert is_closed(end, ZONE, closing)


def test_a_report_with_its_past_months_closed_reads_only_the_open_months(con, settings):
    """A year of rated surveys (600,000, one every 50 s up to 28 May 2026): the report of May,
    on 5 June, closes April and the months before once; the next report reads May's units (and
    the reply window before it) and none of the history behind."""
    fill_ratings(con)
    now = datetime(2026, 6, 5, tzinfo=UTC)
    first = moments_of(con, "2026-05", now)
    scans = Scans(con)
    again = moments_of(scans, "2026-05", now)  # type: ignore[arg-type]
    assert again == first
    assert first[("csat", "2026-05", "overall", None)][0] > 40_000  # May is in the history
    assert sum(first[("csat", m, "overall", None)][0] for m in trend_months("2026-05")) > 550_000
    for table in ("care_actions", "latest_ratings"):
        read = scans.most(table)
        assert 0 < read < HISTORY // 4, f"{table}: a scan read {read:,} rows of {HISTORY:,}"


def test_the_kpis_that_share_their_units_join_them_once(con):
    """CSAT and the dissatisfied rate read the same ratings, the three case KPIs the same
    cases: each set is joined to its actions once a query, not once a KPI."""
    edge_world(con)
    scans = Scans(con)
    found = moments_of(scans, "2026-02", NOW)  # February open: its units are read live
    assert found[("csat", "2026-02", "overall", None)][0] > 0
    live = [counts for counts in scans.scan_counts if "manager_cases" in counts]
    assert len(live) == 1
    assert live[0]["manager_cases"] == 1  # three case KPIs
    assert live[0]["latest_ratings"] == 2  # the ratings' units, and the surveys' rated set


class Scans:
    """A connection that notes, per statement and table, the most rows one scan of it read
    (DuckDB's profile, complete once a result is read whole, so each result is read here)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.by_table: list[dict[str, int]] = []
        self.scan_counts: list[dict[str, int]] = []  # per statement, the scans of each table
        con.execute("SET enable_profiling = 'no_output'; SET profiling_coverage = 'ALL'")

    def execute(self, sql: str, *args: object) -> "Fetched":
        result = self._con.execute(sql, *args)
        columns = [d[0] for d in result.description or []]
        rows = result.fetchall() if columns else []
        profile = json.loads(self._con.get_profiling_information(format="json"))
        tables: dict[str, int] = {}
        counts: dict[str, int] = {}
        for scan in _scans(profile["operator"]):
            name = scan["extra_info"]["Table"].rsplit(".", 1)[-1]
            tables[name] = max(tables.get(name, 0), int(scan.get("rows_scanned", 0)))
            counts[name] = counts.get(name, 0) + 1
        self.by_table.append(tables)
        self.scan_counts.append(counts)
        return Fetched(rows, columns)

    def most(self, table: str) -> int:
        return max(t.get(table, 0) for t in self.by_table)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


class Fetched:
    def __init__(self, rows: list[tuple], columns: list[str]) -> None:
        self.rows, self.columns = rows, columns

    def fetchall(self) -> list[tuple]:
        return self.rows

    def fetch_df(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


def _scans(operators: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for operator in operators:
        if operator.get("type") == "TABLE_SCAN" and "Table" in operator.get("extra_info", {}):
            yield operator
        yield from _scans(operator.get("children", []))
