"""The monthly KPI report as one self-contained HTML file: inline CSS and SVG charts, no
script, no web font, no link that needs the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from core.files import path_inside, private_dir, write_private_text
from core.output import json_text
from insights import charts
from insights.export_panorama import ExportPanorama
from insights.kpis import KPI_BY_NAME, KPIS, shift_month
from insights.monthly import MonthlyReport
from insights.panorama import KpiRow
from insights.variants import p_best_text

TEMPLATES = Path(__file__).with_name("templates")
BREAKDOWNS = ("region", "segment", "channel", "campaign", "tier", "store")


def scale(kpi: str) -> float:
    return 100.0 if KPI_BY_NAME[kpi].binary else 1.0


def shown(kpi: str, value: float | None) -> str:
    """81.2% for a share, 18.4 h for hours, a dash for nothing."""
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if KPI_BY_NAME[kpi].binary else f"{value:.1f} h"


def interval(kpi: str, pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    low, high = (shown(kpi, v) for v in pair)
    return f"95% CI {low} – {high}"


def change(row: KpiRow) -> str:
    return "–" if row.change is None else f"{row.change * 100:+.1f}%"


def arrow(row: KpiRow) -> Markup:
    """▲ or ▼, green when good and red when bad; faded and marked when within noise."""
    if row.flag is None:
        return Markup("")
    colour = "good" if row.good else "bad"
    symbol = "▲" if row.flag == "up" else "▼"
    noise = "" if row.significant else " noise"
    title = "significant" if row.significant else "within noise: may be chance"
    return Markup(f'<span class="arrow {colour}{noise}" title="{title}">{symbol}</span>')


def render_html(report: MonthlyReport) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    env.globals.update(
        shown=shown, interval=interval, change=change, arrow=arrow, kpis=KPI_BY_NAME,
        p_best_text=p_best_text,
    )  # fmt: skip
    return env.get_template("kpi_report.html").render(**_context(report))


def render_export_html(panorama: ExportPanorama) -> str:
    """``careloop insights kpis --format html``: the report's KPI tile, breakdowns and
    drill-down for one KPI of an export, in the same self-contained page style."""
    binary = panorama.kpi.binary

    def shown_value(value: float | None) -> str:
        if value is None:
            return "–"
        return f"{value * 100:.1f}%" if binary else f"{value:.4g}"

    def shown_pair(pair: tuple[float, float] | None) -> str:
        return "" if pair is None else f"95% CI {shown_value(pair[0])} – {shown_value(pair[1])}"

    def points(part: float) -> str:
        return f"{part * 100:+.2f}" if binary else f"{part:+.4g}"

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    env.globals.update(
        shown=shown_value, interval=shown_pair, change=change, arrow=arrow, points=points
    )
    return env.get_template("export_kpis.html").render(
        p=panorama,
        previous=shift_month(panorama.month, -1),
        parts=panorama.drilldowns.get(panorama.kpi.name, []),
    )


def _context(report: MonthlyReport) -> dict[str, Any]:
    return {
        "r": report,
        "tiles": [
            (r, Markup(charts.trend_chart(report.trends[r.kpi], r.target, scale(r.kpi))))
            for r in report.overall()
        ],
        "breakdowns": [(s, _by_key(report, s)) for s in BREAKDOWNS],
        "drills": [
            (KPI_BY_NAME[kpi], parts, Markup(charts.contribution_chart(parts, scale(kpi))))
            for kpi, parts in report.drilldowns.items()
            if parts
        ],
        "ipa": Markup(charts.importance_performance_chart(report.drivers.drivers))
        if report.drivers
        else None,
        "kpi_order": [k.name for k in KPIS],
    }


def _by_key(report: MonthlyReport, scope: str) -> list[tuple[str, dict[str, KpiRow]]]:
    """A breakdown as a table: one line per key, one cell per KPI."""
    table: dict[str, dict[str, KpiRow]] = {}
    for row in report.scope_rows(scope):
        table.setdefault(row.key or "(none)", {})[row.kpi] = row
    return sorted(table.items())


def write_month(report: MonthlyReport, directory: Path) -> tuple[Path, Path]:
    """``kpi-YYYY-MM.html`` and the same figures as ``kpi-YYYY-MM.json``."""
    private_dir(directory)
    html = path_inside(directory, f"kpi-{report.month}", ".html")
    data = path_inside(directory, f"kpi-{report.month}", ".json")
    write_private_text(html, render_html(report))
    write_private_text(data, json_text(report.as_json()))
    return html, data
