"""``careloop insights``: from the outcome back to its causes, on the warehouse or any export.

Heavy libraries (scipy, jieba, polars) load inside each command, so ``careloop --help`` stays
quick.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from careloop.dates import parse_day
from careloop.groups import SummaryGroup
from core.output import console as output_console
from core.output import print_json
from core.tables import PlainTable

insights_app = typer.Typer(
    cls=SummaryGroup,
    help="Key drivers, hot topics, care's lift and an export's KPIs (CSV, Parquet, the warehouse).",
    no_args_is_help=True,
)
console = output_console(markup=False)  # its lines are the data's words, never markup
Format = Annotated[str, typer.Option("--format", help="table or json.")]
Export = Annotated[Path, typer.Argument(help="A CSV (UTF-8, with a header) or Parquet file.")]


def _checked(fmt: str) -> str:
    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"{fmt!r}: use table or json", param_hint="--format")
    return fmt


@insights_app.command("drivers")
def drivers(
    path: Export,
    target: Annotated[str, typer.Option("--target", help="The overall score column.")],
    attributes: Annotated[
        str | None,
        typer.Option(
            help="Attribute columns, comma-separated (default: every other column "
            "except ids (id, *_id) and text columns)."
        ),
    ] = None,
    fmt: Format = "table",
) -> None:
    """Rank a survey's attributes by their share of the target's explained variance (the
    exact Shapley / LMG split of R², right when attributes are correlated; a share, not a
    causal effect), with its bootstrap 95% interval and each one's mean rating."""
    from insights.drivers import analyse_export

    _checked(fmt)
    chosen = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    analysis, ignored = analyse_export(path, target, chosen)
    if fmt == "json":
        print_json({"target": target, **analysis.as_json(), "ignored_columns": ignored})
        return
    title = (f"drivers of {target}: {analysis.n} rows, R² {analysis.r_squared:.2f} "
             f"({analysis.method} Shapley split of R²)")  # fmt: skip
    table = PlainTable("attribute", "share of R²", "95% interval", "performance (mean)",
                       "fix first", title=title)  # fmt: skip
    weak = set(analysis.fix_first())
    for d in analysis.drivers:
        shown = f"{d.interval[0]:.1%} to {d.interval[1]:.1%}" if d.interval else "-"
        table.add_row(d.attribute, f"{d.importance:.1%}", shown, f"{d.performance:.2f}",
                      "yes" if d.attribute in weak else "")  # fmt: skip
    console.print(table)
    if analysis.method == "sampled":
        console.print(f"sampled from {analysis.n} orders: shares within ±"
                      f"{2 * analysis.sampling_error:.1%}", highlight=False)  # fmt: skip
    for warning in analysis.warnings:
        console.print(f"warning: {warning}", highlight=False)
    if ignored or analysis.excluded:
        console.print(f"ignored columns: {', '.join(ignored) or 'none'}; rows left out for an "
                      f"empty cell: {analysis.excluded}", highlight=False)  # fmt: skip


@insights_app.command("lift")
def lift(
    path: Export,
    group: Annotated[str, typer.Option("--group", help="Column holding treated or holdout.")],
    outcome: Annotated[str, typer.Option("--outcome", help="Column: 0/1 or a number.")],
    detect: Annotated[
        float | None,
        typer.Option(help="The lift to size a campaign for (default: the one measured)."),
    ] = None,
    fmt: Format = "table",
) -> None:
    """The difference between treated and held-out customers, with its 95% interval, p-value
    and the sample size a campaign needs to detect it."""
    from insights.lift import measure_export

    _checked(fmt)
    found = measure_export(path, group, outcome, detect=detect)
    if fmt == "json":
        print_json(found.as_json())
        return
    console.print(
        f"treated {found.treated_mean:.4g} (n {found.n_treated}) vs holdout "
        f"{found.holdout_mean:.4g} (n {found.n_holdout}): lift {found.verdict()}\n"
        f"to detect a lift of {found.detect:.4g}: {found.needed or '-'} customers in all "
        f"(same holdout share); rows left out for an empty outcome: {found.excluded}",
        highlight=False,
    )


@insights_app.command("kpis")
def kpis(
    path: Export,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM: the month to report.")],
    date: Annotated[str, typer.Option("--date", help="Column: each unit's date (YYYY-MM-DD).")],
    value: Annotated[str, typer.Option("--value", help="Column: 0/1 or a number per unit.")],
    by: Annotated[
        str, typer.Option("--by", help="Columns to break the KPI down by, comma-separated.")
    ],
    kpi: Annotated[
        str | None,
        typer.Option(
            "--kpi",
            help="The KPI's name (default: the value column); csat, ... "
            "bring their direction and targets.",
        ),
    ] = None,
    better: Annotated[
        str | None, typer.Option("--better", help="higher or lower (default: higher).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or html.")] = "table",
) -> None:
    """The monthly report's KPI panorama on an export with one row per unit (a rating, a
    case, a message): the KPI overall and per value of each --by column against the month
    before (change, flag, significance with the same adjustment, n), and the drill-down into
    rate and mix when it moved. Same code and JSON shape as careloop report."""
    from core.output import echo_html
    from insights.export_panorama import export_panorama
    from insights.report_html import render_export_html

    if fmt not in ("table", "json", "html"):
        raise typer.BadParameter(f"{fmt!r}: use table, json or html", param_hint="--format")
    if better not in (None, "higher", "lower"):
        raise typer.BadParameter(f"{better!r}: use higher or lower", param_hint="--better")
    columns = [c.strip() for c in by.split(",") if c.strip()]
    found = export_panorama(
        path, month, date=date, value=value, by=columns, kpi=kpi,
        better="lower" if better == "lower" else "higher" if better else None,
    )  # fmt: skip
    if fmt == "json":
        print_json(found.as_json())
        return
    if fmt == "html":
        echo_html(render_export_html(found))
        return
    percent = found.kpi.binary
    table = PlainTable("scope", "key", "value", "previous", "difference", "relative change",
                  "flag", "significant", "n", title=f"{found.kpi.label}, {month}")  # fmt: skip
    for r in found.rows:
        table.add_row(
            r.scope, r.key or "", _figure(r.value, percent), _figure(r.previous, percent),
            _points(r.difference, percent), "" if r.change is None else f"{r.change:+.1%}",
            r.flag or "", "yes" if r.significant else "", str(r.n),
        )  # fmt: skip
    console.print(table)
    for part in found.drilldowns.get(found.kpi.name, []):
        console.print(f"{part.scope} {part.key}: rate {_points(part.rate, percent)}, "
                      f"mix {_points(part.mix, percent)}", highlight=False)  # fmt: skip
    # said on every surface, as drivers and lift say theirs (the JSON has excluded_rows)
    console.print(f"rows left out for an empty value: {found.excluded}", highlight=False)


def _points(value: float | None, percent: bool) -> str:
    """A difference in the KPI's own units: percentage points for a share (never "-0.0")."""
    if value is None:
        return "-"
    shown = round(value * 100, 1) if percent else value
    shown = 0.0 if shown == 0 else shown  # no negative zero
    return f"{shown:+.1f} pts" if percent else f"{shown:+.4g}"


def _figure(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:.4g}"


@insights_app.command("topics")
def topics(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM (default: last month, business timezone).")
    ] = None,
    fmt: Format = "table",
) -> None:
    """This month's dissatisfied comments by topic, against last month; hot ones first."""
    from core.clock import last_month
    from core.settings import load_settings
    from insights.kpis import report_month
    from insights.topics import hot_topics
    from warehouse.db import warehouse

    _checked(fmt)
    settings = load_settings()
    chosen = month or last_month(settings.zone)
    report_month(chosen)
    with warehouse(settings.warehouse_path) as con:
        found = hot_topics(con, chosen, settings.timezone)
    if fmt == "json":
        print_json({"month": chosen, "topics": [t.as_json() for t in found]})
        return
    table = PlainTable("topic", "this month", "last month", "hot", "examples", "stores",
                  title=f"dissatisfied comments by topic, {chosen}")  # fmt: skip
    for t in found:
        stores = ", ".join(f"{s} ({n})" for s, n in t.top_stores())
        hot = "HOT" if t.hot else ""
        table.add_row(t.label, str(t.count), str(t.previous), hot, " · ".join(t.examples), stores)
    console.print(table)


@insights_app.command("variants")
def variants(
    campaign: Annotated[str, typer.Option("--campaign", help="The campaign whose test to show.")],
    fmt: Format = "table",
) -> None:
    """A campaign's message variants: each one's sends, outcomes and rate with its 95%
    interval, the probability each is best, and the winner with the date the stopping rule
    was first met (the same figures as the monthly report)."""
    from core.clock import utc_now
    from core.settings import load_settings
    from insights.variants import p_best_text, variant_report
    from warehouse.db import warehouse

    _checked(fmt)
    settings = load_settings()
    with warehouse(settings.warehouse_path, read_only=True) as con:
        found = variant_report(con, campaign, utc_now(), settings.reply_window_hours)
    if fmt == "json":
        print_json(found.as_json())
        return
    title = f"{campaign}: message variants on {found.outcome}"
    table = PlainTable("variant", "sends", "outcomes", found.outcome_label, "95% interval",
                       "P(best)", title=title)  # fmt: skip
    for v in found.variants:
        shown = f"{v.interval[0]:.1%} to {v.interval[1]:.1%}" if v.interval else "-"
        rate = "-" if v.rate is None else f"{v.rate:.1%}"
        table.add_row(v.name, str(v.sends), str(v.outcomes), rate, shown, p_best_text(v.p_best))
    console.print(table)
    w = found.winner
    verdict = (f"winner: {w.variant}, declared on {w.declared_on} (plan {w.look}, P(best) "
               f"{p_best_text(w.p_best)})" if w else "no winner declared yet")  # fmt: skip
    console.print(f"{verdict}; stopping rule: {found.rule()}", highlight=False)


@insights_app.command("send-time")
def send_time(
    campaign: Annotated[str, typer.Option("--campaign", help="The campaign's name.")],
    cutoff: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_day,
            metavar="YYYY-MM-DD",
            help="A day in the business timezone: learn from the sends before, judge the "
            "campaign's sends from then on (default: 30 days before --until).",
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_day,
            metavar="YYYY-MM-DD",
            help="A day in the business timezone: the test period's end, excluded "
            "(default: just after the campaign's last send).",
        ),
    ] = None,
    fmt: Format = "table",
) -> None:
    """The learned send hour against the campaign's fixed time, on a test period: hours
    are learned from every survey sent before the cut-off; the campaign's later sends whose
    hour did not follow the learning (a fixed or due time, or the random exploration share)
    are split into those that went at the customer's learned hour and those at the fixed
    hour, among customers whose two hours differ. Response rates with Wilson intervals, the
    difference with Newcombe's, and how many customers had history to learn from."""
    from campaigns.catalog import checked_campaign
    from core.settings import load_settings
    from insights.send_time import evaluate_send_time, held_out_period
    from insights.stats import wilson
    from warehouse.db import warehouse

    _checked(fmt)
    settings = load_settings()
    loaded = checked_campaign(settings, campaign)
    with warehouse(settings.warehouse_path) as con:
        period = held_out_period(
            con, loaded.name, cutoff and cutoff.replace(tzinfo=settings.zone),
            until and until.replace(tzinfo=settings.zone),
        )  # fmt: skip
        if period is None:
            raise typer.BadParameter(f"{campaign!r} has sent nothing", param_hint="--campaign")
        if period[0] >= period[1]:
            raise typer.BadParameter(
                f"the period starts {period[0]:%Y-%m-%d} and ends {period[1]:%Y-%m-%d}: give a "
                "--cutoff before --until",
                param_hint="--cutoff",
            )
        found = evaluate_send_time(con, loaded.campaign, *period)
    if found.customers == 0:
        raise typer.BadParameter(
            f"{campaign!r} sent nothing from {period[0]:%Y-%m-%d} to {period[1]:%Y-%m-%d}: "
            "give a period with sends",
            param_hint="--cutoff/--until",
        )
    if fmt == "json":
        print_json(found.as_json())
        return
    table = PlainTable("sent at", "sends in the test period", "answered", "response rate",
                  "95% interval", "median reply (min)",
                  title=f"{campaign}: learned hour vs fixed {found.fixed_hour:02d}:00, "
                  f"sends {found.cutoff:%Y-%m-%d} to {found.until:%Y-%m-%d}")  # fmt: skip
    groups = (("learned hour", found.learned), ("fixed hour", found.fixed))
    for (label, m), minutes in zip(groups, found.reply_minutes, strict=True):
        interval = wilson(m.total, m.n)
        table.add_row(label, str(m.n), str(int(m.total)), _figure(m.mean, True),
                      f"{interval[0]:.1%} to {interval[1]:.1%}" if interval else "-",
                      "-" if minutes is None else f"{minutes:g}")  # fmt: skip
    console.print(table)
    d = found.difference
    console.print(
        "difference: " + (f"{d.estimate * 100:+.1f} pts ({d.low * 100:+.1f} to "
                          f"{d.high * 100:+.1f}), p {d.p_value:.3g}" if d else "-")
        + f"\ncustomers with sends in the test period {found.customers}, with history "
        f"{found.with_history}, moved from the fixed hour {found.moved}, compared "
        f"{found.compared}; sends placed by the learning, left out: {found.placed_by_learning}",
        highlight=False,
    )  # fmt: skip
    if not found.learned.n:
        console.print(
            "no send of the test period went at a learned hour: the campaign's hours did not vary "
            "(give send_time: learned an exploration share)",
            highlight=False,
        )
