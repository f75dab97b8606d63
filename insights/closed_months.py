"""When a month's KPIs are closed, and the closed months' moments kept in the warehouse.

A month's figures keep changing after it ends: a rating can come (or be replaced by a later
one) until the survey's reply window is over, an opt-out within 7 days of a message counts
against it, a case is contacted within its SLA, and its second round's answer or a follow-up
can recover it days or weeks later. A month is **closed** ``CLOSE_AFTER_DAYS`` after its last
day, in the business zone: four weeks, longer than the reply window (72 hours by default), the
opt-out window (7 days), the SLA (48 hours) and a second round's window together, and short
enough that, when a report runs after its month has ended, the month before it is closed or
its month is the only one still open: the report's live query reads at most its month and the
one before, never the history behind them. What changes in a closed month after that (a case
recovered in its sixth week) stays with the figure as it was when the month closed, as a
finance close does; the month is written once, the first time a report needs it closed
(``closed_at`` says when), and read from the warehouse on every surface from then on.

The rows are keyed by the business zone, SLA and reply window they were computed with: a
deployment that changes one computes its closed months again, under the new settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from warehouse.db import query_frame, register_frame, transaction

CLOSE_AFTER_DAYS = 28  # at most February's length: see the docstring
MOMENT_COLUMNS = ("kpi", "month", "scope", "key", "n", "total", "squares")
MOMENT_SCHEMA = {
    "kpi": pl.String, "month": pl.String, "scope": pl.String, "key": pl.String,
    "n": pl.Int64, "total": pl.Float64, "squares": pl.Float64,
}  # fmt: skip


@dataclass(frozen=True)
class Basis:
    """What a month's KPI moments depend on besides the warehouse's rows."""

    zone: str
    sla_hours: int
    reply_window_hours: int

    def params(self) -> dict[str, object]:
        return {"zone": self.zone, "sla": self.sla_hours, "window": self.reply_window_hours}


def local_midnight_utc(day: date, zone: str) -> datetime:
    """The UTC instant at which ``day`` begins in ``zone``: units at or after it are placed in
    that day or later, as ``timezone(zone, at) >= day`` places them."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def is_closed(month_end: date, zone: str, now: datetime) -> bool:
    """Whether the month ending before ``month_end`` (the next month's first day) is closed."""
    return now >= local_midnight_utc(month_end + timedelta(days=CLOSE_AFTER_DAYS), zone)


def closed_moments(con: duckdb.DuckDBPyConnection, months: list[str], basis: Basis) -> pl.DataFrame:
    """The kept moments of those of ``months`` already closed, and which months they are
    (a closed month with no unit has no moments, yet it is closed)."""
    frame = query_frame(
        con,
        "SELECT kpi, month, scope, key, n, total, squares FROM kpi_month_moments "
        "WHERE list_contains($months, month) AND zone = $zone AND sla_hours = $sla "
        "AND reply_window_hours = $window",
        {"months": months, **basis.params()},
    )
    return as_moments(frame)


def kept_months(con: duckdb.DuckDBPyConnection, months: list[str], basis: Basis) -> set[str]:
    rows = con.execute(
        "SELECT month FROM kpi_closed_months WHERE list_contains($months, month) "
        "AND zone = $zone AND sla_hours = $sla AND reply_window_hours = $window",
        {"months": months, **basis.params()},
    ).fetchall()
    return {str(month) for (month,) in rows}


def keep_closed(
    con: duckdb.DuckDBPyConnection, months: list[str], moments: pl.DataFrame, basis: Basis,
    now: datetime,
) -> None:  # fmt: skip
    """Record ``months`` as closed with their moments (every scope), in one transaction."""
    if not months:
        return
    register_frame(con, "closing_moments", moments.filter(pl.col("month").is_in(months)))
    try:
        with transaction(con):
            con.execute(
                "INSERT INTO kpi_closed_months SELECT unnest($months), $zone, $sla, $window, $now",
                {"months": months, "now": now, **basis.params()},
            )
            con.execute(
                "INSERT INTO kpi_month_moments SELECT month, $zone, $sla, $window, kpi, scope, "
                "key, n, total, squares FROM closing_moments",
                basis.params(),
            )
    finally:
        con.unregister("closing_moments")


def as_moments(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in the moments' columns and types (an empty result has no types of its own)."""
    if frame.is_empty():
        return pl.DataFrame(schema=MOMENT_SCHEMA)
    return frame.select(pl.col(c).cast(t) for c, t in MOMENT_SCHEMA.items())
