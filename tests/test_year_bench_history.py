"""The year benchmark's history ends as a year in operation leaves the warehouse: with what
last month's scheduled report stored (the lift's settled days, the closed months' KPIs)."""

from datetime import timedelta
from pathlib import Path

import duckdb

from benchmarks.year_bench import DAY, year_warehouse


def test_the_history_holds_what_last_months_report_stored(tmp_path: Path) -> None:
    path, _ = year_warehouse(tmp_path, subscribers=3000, days=120)
    con = duckdb.connect(str(path), read_only=True)
    try:
        # the report of 1 February at 06:00: the lift's outcome is 90 days after the care
        report_day = DAY.replace(day=1) - timedelta(days=28)
        stored = con.execute("SELECT zone, through FROM care_firsts_stored").fetchall()
        assert stored == [("Asia/Shanghai", report_day - timedelta(days=90))]
        [(firsts,)] = con.execute("SELECT count(*) FROM care_firsts").fetchall()
        assert firsts > 0
        rows = con.execute("SELECT month FROM kpi_closed_months ORDER BY 1").fetchall()
        months = [m for (m,) in rows]
        # closed 28 days after their end: December was, January not yet
        assert months[-1] == "2026-12"
        [(moments,)] = con.execute(
            "SELECT count(*) FROM kpi_month_moments WHERE month = '2026-12'"
        ).fetchall()
        assert moments > 0
    finally:
        con.close()
