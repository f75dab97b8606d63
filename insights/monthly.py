"""The monthly KPI report's content: KPIs, drill-downs, key drivers, hot topics and care's lift,
gathered from the warehouse for one business month."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from core.clock import business_date, stored_range
from core.settings import Settings
from insights.drivers import DriverAnalysis, analyse
from insights.exports import ExportError
from insights.kpis import (
    KPIS,
    kpi_moments,
    month_last_day,
    month_start,
    report_month,
    shift_month,
)
from insights.lift import CampaignLift, retention_lifts
from insights.panorama import Contribution, KpiRow, TrendPoint, drill_downs, kpi_rows, trend
from insights.report import WrittenReport, write_reports
from insights.targets import Targets, load_targets
from insights.topics import Topic, hot_topics
from insights.variants import VariantReport, variant_reports
from warehouse.db import query_frame

# The email rating page's attribute ratings, with the overall score they explain. In a fixed
# order: the bootstrap resamples rows by position, and the stored order is the warehouse's
# (a rebuild, migration 0031, rewrote it), so a report shown again must not depend on it.
ATTRIBUTES_SQL = """
SELECT e.store_id, e.score, CAST(e.attributes AS VARCHAR) AS attributes
FROM evaluations e
WHERE e.intent = 'rating' AND e.round = 1 AND e.attributes IS NOT NULL
  AND strftime(timezone($zone, e.received_at), '%Y-%m') = $month
  AND e.received_at >= $lo AND e.received_at < $hi
ORDER BY e.received_at, e.evaluation_id
"""


@dataclass(frozen=True)
class MonthlyReport:
    month: str
    zone: str
    as_of: date
    rows: list[KpiRow]
    trends: dict[str, list[TrendPoint]]
    drilldowns: dict[str, list[Contribution]]
    drivers: DriverAnalysis | None
    store_drivers: dict[str, DriverAnalysis]
    topics: list[Topic]
    lifts: list[CampaignLift]
    lift_days: int
    targets: Targets
    variants: list[VariantReport] = field(default_factory=list)  # each test as of the report
    lift_window: tuple[date, date] | None = None  # lift_window(): the care the lift counts

    def overall(self) -> list[KpiRow]:
        return [r for r in self.rows if r.scope == "overall"]

    def scope_rows(self, scope: str) -> list[KpiRow]:
        return [r for r in self.rows if r.scope == scope]

    def as_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "timezone": self.zone,
            "as_of": self.as_of.isoformat(),
            "kpis": [r.as_json() for r in self.rows],
            "drilldown": {
                kpi: [c.as_json() for c in parts] for kpi, parts in self.drilldowns.items()
            },
            "drivers": _drivers_json(self.drivers),
            "drivers_by_store": {s: _drivers_json(a) for s, a in self.store_drivers.items()},
            "topics": [t.as_json() for t in self.topics],
            "lift": [_lift_json(c, self.lift_days) for c in self.lifts],
            "lift_window": _window_json(self.lift_window),
            "variants": [v.as_json() for v in self.variants],
        }


def _window_json(window: tuple[date, date] | None) -> dict[str, str] | None:
    return None if window is None else {"from": window[0].isoformat(), "to": window[1].isoformat()}


def lift_window(month: str, as_of: date, lift_days: int) -> tuple[date, date] | None:
    """The first care a month's retention lift counts: from the first day of the twelve months
    to ``month`` until the month's last day or ``lift_days`` before ``as_of``, whichever is
    earlier (the outcome of later care is not known yet). A report run late counts no care
    after its month. None when no day of it has passed."""
    since = month_start(shift_month(month, -11))
    last = min(month_last_day(month), as_of - timedelta(days=lift_days))
    return (since, last) if last >= since else None


def _drivers_json(analysis: DriverAnalysis | None) -> dict[str, Any] | None:
    return None if analysis is None else analysis.as_json()


def _lift_json(c: CampaignLift, days: int) -> dict[str, Any]:
    return {
        "campaign": c.campaign_id,
        "outcome": f"retained_{days}d",
        "cared_from": c.first.isoformat(),
        "cared_to": c.last.isoformat(),
        **(c.lift.as_json() if c.lift else {"n_treated": c.treated, "n_holdout": c.held_out}),
    }


def build_monthly_report(
    con: duckdb.DuckDBPyConnection, month: str, zone: str, *, now: datetime, sla_hours: int,
    targets: Targets, lift_days: int, reply_window_hours: int,
) -> MonthlyReport:  # fmt: skip
    """Everything the month's report shows, as of ``now``."""
    moments = kpi_moments(
        con, month, zone, sla_hours=sla_hours, now=now, reply_window_hours=reply_window_hours
    )
    rows = kpi_rows(moments, month, targets)
    drivers, by_store = attribute_drivers(con, month, zone, targets.min_units)
    as_of = business_date(ZoneInfo(zone), now)
    window = lift_window(month, as_of, lift_days)
    lifts = (
        retention_lifts(con, as_of, zone, days=lift_days, since=window[0], until=window[1])
        if window
        else []
    )
    return MonthlyReport(
        month, zone, as_of, rows,
        {k.name: trend(moments, k.name, month) for k in KPIS},
        drill_downs(moments, rows, month, names={"store": store_names(con)}), drivers, by_store,
        hot_topics(con, month, zone),
        lifts, lift_days, targets, variant_reports(con, now, reply_window_hours), window,
    )  # fmt: skip


def store_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("SELECT store_id, name FROM stores").fetchall()
    return {str(store): str(name) for store, name in rows}


@dataclass(frozen=True)
class MonthReports:
    """What a month's report writes from the warehouse: the KPIs (``write_month`` renders
    them, the warehouse let go), and the loop report with the managers' lists, written."""

    monthly: MonthlyReport
    loop: WrittenReport


def month_reports(
    con: duckdb.DuckDBPyConnection, settings: Settings, month: str, now: datetime
) -> MonthReports:
    """The month's KPIs and its loop report with the store managers' lists, as of ``now``: what
    `careloop report` and the scheduled ``monthly-report`` both write."""
    first = report_month(month)
    monthly = configured_monthly_report(con, settings, month, now)
    # the month so far, for the current one: its period said "to the 31st" on the 5th
    last = min(month_last_day(month), business_date(settings.zone, now))
    loop = write_reports(
        con, settings.reports_dir, f"careloop: the loop in {month}", settings.timezone,
        first, last, now=now,
        sla_hours=settings.case_sla_hours, reply_window_hours=settings.reply_window_hours,
        file_name=f"loop-{month}.md", variants=monthly.variants,
    )  # fmt: skip
    return MonthReports(monthly, loop)


def configured_monthly_report(
    con: duckdb.DuckDBPyConnection, settings: Settings, month: str, now: datetime
) -> MonthlyReport:
    """The month's report with this deployment's timezone, SLA, lift window and targets: what
    the command, the scheduled flow and the demo all write. A month that has not begun is
    refused: no unit can be dated in it yet, so its report would say nothing (a typo, 2030-01)."""
    today = business_date(settings.zone, now)
    if report_month(month) > today:
        raise ValueError(f"month {month!r} has not begun: it is {today} in {settings.timezone}")
    return build_monthly_report(
        con, month, settings.timezone, now=now, sla_hours=settings.case_sla_hours,
        targets=load_targets(), lift_days=settings.lift_days,
        reply_window_hours=settings.reply_window_hours,
    )  # fmt: skip


def attribute_drivers(
    con: duckdb.DuckDBPyConnection, month: str, zone: str, min_units: int
) -> tuple[DriverAnalysis | None, dict[str, DriverAnalysis]]:
    """Key drivers of the overall score from the month's attribute ratings: overall, and for
    each store with at least ``min_units`` rated emails."""
    lo, hi = stored_range(month_start(month), month_start(shift_month(month, 1)))
    raw = query_frame(con, ATTRIBUTES_SQL, {"zone": zone, "month": month, "lo": lo, "hi": hi})
    if raw.is_empty():
        return None, {}
    decoded = raw["attributes"].str.json_decode().struct.unnest()
    frame = pl.concat([raw.select("store_id", "score"), decoded], how="horizontal")
    names = sorted(decoded.columns)
    frame = frame.with_columns(pl.col(c).cast(pl.Float64, strict=False) for c in ["score", *names])
    overall = _drivers_or_none(frame, names)
    by_store = {
        str(store): found
        for (store,), part in frame.group_by("store_id", maintain_order=True)
        if part.height >= min_units and (found := _drivers_or_none(part, names))
    }
    return overall, dict(sorted(by_store.items()))


def _drivers_or_none(frame: pl.DataFrame, names: list[str]) -> DriverAnalysis | None:
    try:
        return analyse(frame, "score", names)
    except ExportError:  # too few ratings, or every one the same: nothing to rank
        return None
