"""The monthly KPI report, on schedule: the HTML report and its JSON figures for last month
(business timezone), with the overall KPIs as a Prefect artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.clock import last_month, utc_now
from core.progress import step_done
from flows.common import settings_for, writing_warehouse
from insights.kpis import report_month
from insights.monthly import MonthlyReport, configured_monthly_report
from insights.report_html import shown, write_month


@flow(name="monthly-report")
def monthly_report(
    month: str | None = None, home: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Write the KPI report of ``month`` (default: last month) into the reports folder."""
    settings = settings_for(home)
    at = now or utc_now()
    chosen = month or last_month(settings.zone, at)
    report_month(chosen)
    with writing_warehouse(settings) as con:  # DuckDB: one process at a time opens the file
        report = configured_monthly_report(con, settings, chosen, at)
    html, data = write_month(report, settings.reports_dir)
    rows = key_figures(report)
    step_done("monthly report", {"month": chosen, "flagged": sum(1 for r in rows if r["flag"])})
    create_table_artifact(table=rows, key="monthly-kpis", description=f"KPIs of {chosen}")
    create_markdown_artifact(
        markdown=f"KPI report of {chosen}: `{html}` (figures: `{data}`)", key="monthly-report"
    )
    return {"month": chosen, "html": str(html), "json": str(data), "kpis": rows}


def key_figures(report: MonthlyReport) -> list[dict[str, Any]]:
    """The overall KPIs, as the artifact shows them."""
    return [
        {
            "kpi": r.kpi,
            "value": shown(r.kpi, r.value),
            "previous": shown(r.kpi, r.previous),
            "target": shown(r.kpi, r.target),
            "change": None if r.change is None else f"{r.change:+.1%}",
            "flag": r.flag,
            "significant": r.significant,
            "n": r.n,
        }
        for r in report.overall()
    ]
