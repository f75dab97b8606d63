"""The monthly report, on schedule, as `careloop report` writes it: for last month (business
timezone) the KPIs' HTML report and JSON figures, the loop report and the store managers'
lists, with the overall KPIs as a Prefect artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.clock import last_month, utc_now
from core.progress import step_done
from flows.common import settings_for, writing_warehouse
from insights.kpis import report_month
from insights.monthly import MonthlyReport, month_reports
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
        reports = month_reports(con, settings, chosen, at)
    html, data = write_month(reports.monthly, settings.reports_dir)
    rows = key_figures(reports.monthly)
    lists = len(reports.loop.store_rows)
    step_done(
        "monthly report",
        {"month": chosen, "flagged": sum(1 for r in rows if r["flag"]), "store lists": lists},
    )
    create_table_artifact(table=rows, key="monthly-kpis", description=f"KPIs of {chosen}")
    create_markdown_artifact(
        markdown=(
            f"KPI report of {chosen}: `{html}` (figures: `{data}`); loop report: "
            f"`{reports.loop.path}`; {lists} store managers' lists"
        ),
        key="monthly-report",
    )
    return {
        "month": chosen,
        "html": str(html),
        "json": str(data),
        "loop": str(reports.loop.path),
        "store_lists": lists,
        "kpis": rows,
    }


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
