"""The KPI panorama on any export: one row per unit (a rating, a case, a message) with its date,
a 0/1 or numeric value and the columns to break it down by, read into the same moments the
warehouse's KPIs give, so the figures, tests, adjustment and drill-down are the monthly
report's own (``insights.panorama``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from insights.exports import ExportError, bad_rows, numbers, read_export, require_columns
from insights.kpis import KPI_BY_NAME, Better, Kpi, month_start, shift_month
from insights.panorama import Contribution, KpiRow, drill_downs, kpi_rows
from insights.targets import Targets, load_targets


@dataclass(frozen=True)
class ExportPanorama:
    source: Path
    month: str
    kpi: Kpi
    scopes: tuple[str, ...]  # overall, then the --by columns
    rows: list[KpiRow]
    drilldowns: dict[str, list[Contribution]]
    excluded: int  # rows with an empty value

    def as_json(self) -> dict[str, Any]:
        """The monthly report's shape: ``kpis`` rows and ``drilldown`` by KPI."""
        return {
            "month": self.month,
            "source": str(self.source),
            "kpis": [r.as_json() for r in self.rows],
            "drilldown": {
                kpi: [c.as_json() for c in parts] for kpi, parts in self.drilldowns.items()
            },
            "excluded_rows": self.excluded,
        }


def export_panorama(
    path: Path, month: str, *, date: str, value: str, by: list[str], kpi: str | None = None,
    better: Better | None = None, targets: Targets | None = None,
) -> ExportPanorama:  # fmt: skip
    """``value``'s KPI for ``month`` against the month before, overall and per value of each
    ``by`` column, with the drill-down when it moved. A known KPI name (csat, ...) brings its
    direction and targets; any other name is better higher unless ``better`` says lower."""
    month_start(month)
    if not by:
        raise ExportError("give at least one column to break the KPI down by (--by)")
    clash = [c for c in by if c == "overall" or by.count(c) > 1]
    if clash:
        raise ExportError(f"--by {', '.join(sorted(set(clash)))}: each column once, not 'overall'")
    frame, first_row = read_export(path)
    require_columns(frame, path, date, value, *by)
    months = _months(frame, date, path, first_row)
    values = numbers(frame, value, path, first_row)
    units = pl.DataFrame({"month": months, "value": values}).hstack(
        [frame[c].fill_null("(none)").alias(f"by:{c}") for c in by]
    )
    kept = units.drop_nulls("value")
    binary = bool(kept["value"].is_in([0.0, 1.0]).all())
    name = kpi or value
    known = KPI_BY_NAME.get(name)
    spec = Kpi(name, known.label if known else name, binary,
               better or (known.better if known else "higher"), "")  # fmt: skip
    moments = _moments(kept, name, month, by)
    scopes = ("overall", *by)
    chosen = targets or load_targets()
    rows = kpi_rows(moments, month, chosen, [spec], scopes)
    drilled = drill_downs(moments, rows, month, scopes=by)
    return ExportPanorama(path, month, spec, scopes, rows, drilled, units.height - kept.height)


def _months(frame: pl.DataFrame, column: str, path: Path, first_row: int) -> pl.Series:
    """Each row's month from its date (``2026-02-14``, or a timestamp: its date as written)."""
    text = frame[column].str.strip_chars()
    dates = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    bad = dates.is_null()
    if bad.any():
        raise ExportError(
            f"{path}: column {column}: {bad_rows(text, bad, first_row)} not a date (YYYY-MM-DD)"
        )
    return dates.dt.strftime("%Y-%m")


def _moments(units: pl.DataFrame, kpi: str, month: str, by: list[str]) -> pl.DataFrame:
    """Units' count, sum and sum of squares per month and scope key: what the warehouse's
    ``kpi_moments`` gives, for this month and the one before."""
    placed = units.filter(pl.col("month").is_in([month, shift_month(month, -1)]))
    sums = [
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("value").sum().alias("total"),
        (pl.col("value") ** 2).sum().alias("squares"),
    ]
    overall = (
        placed.group_by("month")
        .agg(sums)
        .with_columns(pl.lit("overall").alias("scope"), pl.lit(None, pl.String).alias("key"))
    )
    parts = [
        placed.group_by("month", f"by:{c}")
        .agg(sums)
        .rename({f"by:{c}": "key"})
        .with_columns(pl.lit(c).alias("scope"))
        for c in by
    ]
    columns = ["kpi", "month", "scope", "key", "n", "total", "squares"]
    return pl.concat(
        [p.with_columns(pl.lit(kpi).alias("kpi")).select(columns) for p in [overall, *parts]]
    )
