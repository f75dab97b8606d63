"""The loop's figures, the first KPI report, and each store manager's dissatisfied list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from core.clock import stored_range, utc_now
from core.files import (
    is_plain_id,
    path_inside,
    private_dir,
    write_private_csvs,
    write_private_text,
)
from insights.kpis import RECOVERED, RECOVERY_DUE, SECOND_ROUND
from insights.variants import VariantReport, variant_markdown, variant_reports
from warehouse.db import query_dicts
from warehouse.figures import (
    ACTIVE_SQL,
    CASE_LIST_SQL,
    IN_SLA,
    LISTED_SHOWN_DAYS,
    OPT_OUT_DAYS,
    OPT_OUT_EVENTS_SQL,
    SLA_DUE,
)

# A report's period: business dates in [$since, $until] (either open). Care (targeted, sent,
# replied, rated) is the first-round care planned in it; cases are dated by when they opened
# and opt-outs by when they came, as the monthly report dates them.
IN_PERIOD = """
(CAST($since AS DATE) IS NULL OR timezone($zone, {at})::DATE >= $since)
AND (CAST($until AS DATE) IS NULL OR timezone($zone, {at})::DATE <= $until)
AND {at} >= $lo AND {at} < $hi
"""  # $lo, $hi: the stored range around the period (core.clock.stored_range), for zone maps
# Every case figure dates a case by when it opened, as the monthly report's case KPIs do.
CASE_IN_PERIOD = IN_PERIOD.format(at="m.opened_at")
OPTED_IN_PERIOD = IN_PERIOD.format(at="occurred_at")
NO_MESSAGE = f"(no message on its channel in the {OPT_OUT_DAYS} days before the opt-out)"
LISTED_PERIOD = (
    f"every case still to do, and those closed in the last {LISTED_SHOWN_DAYS} days "
    "(the managers' page lists by the same rule, as of its last publish)"
)
LOOP_SQL = f"""
WITH first AS (
    SELECT * FROM care_actions WHERE round = 1 AND {IN_PERIOD.format(at="created_at")}
), actions AS (
    SELECT campaign_id,
        count(*) AS targeted,
        count(*) FILTER (status = 'suppressed') AS suppressed,
        count(*) FILTER (status = 'held_out') AS held_out,
        count(*) FILTER (sent_at IS NOT NULL) AS sent,
        count(*) FILTER (sent_at IS NOT NULL AND channel = 'sms') AS sent_sms,
        count(*) FILTER (sent_at IS NOT NULL AND channel = 'email') AS sent_email,
        count(*) FILTER (sent_at IS NOT NULL AND channel = 'voice') AS sent_voice,
        count(*) FILTER (sent_at IS NOT NULL AND survey) AS surveyed,
        count(*) FILTER (status = 'delivered') AS delivered
    FROM first GROUP BY campaign_id
), replies AS (
    SELECT a.campaign_id,
        count(DISTINCT e.action_id) FILTER (e.attribution = 'matched') AS replied
    FROM evaluations e JOIN first a USING (action_id)
    WHERE e.received_at >= $lo  -- a reply comes after its action: the history is skipped
    GROUP BY ALL
), opted AS (
    SELECT coalesce(campaign_id, '{NO_MESSAGE}') AS campaign_id, count(*) AS opted_out
    FROM ({OPT_OUT_EVENTS_SQL.format(where=OPTED_IN_PERIOD)}) GROUP BY ALL
), ratings AS (
    SELECT a.campaign_id, count(*) AS rated,
        count(*) FILTER (r.score >= 4) AS satisfied,
        count(*) FILTER (r.score <= 2) AS dissatisfied
    FROM action_ratings r JOIN first a USING (action_id) WHERE r.received_at >= $lo
    GROUP BY ALL
), cases AS (
    SELECT m.campaign_id, count(s.sent_at) AS second_round_sent, count(*) AS cases,
        count(*) FILTER ({RECOVERED}) AS recovered,
        count(*) FILTER ({RECOVERY_DUE}) AS recovery_due
    FROM manager_cases m
    {SECOND_ROUND}
    WHERE {CASE_IN_PERIOD} GROUP BY ALL
), campaign_ids AS (
    SELECT campaign_id FROM actions UNION SELECT campaign_id FROM opted
    UNION SELECT campaign_id FROM cases
)
SELECT campaign_id, coalesce(targeted, 0) AS targeted, coalesce(suppressed, 0) AS suppressed,
    coalesce(held_out, 0) AS held_out, coalesce(sent, 0) AS sent,
    coalesce(sent_sms, 0) AS sent_sms, coalesce(sent_email, 0) AS sent_email,
    coalesce(sent_voice, 0) AS sent_voice, coalesce(surveyed, 0) AS surveyed,
    coalesce(delivered, 0) AS delivered, coalesce(replied, 0) AS replied,
    coalesce(rated, 0) AS rated,
    coalesce(satisfied, 0) AS satisfied, coalesce(dissatisfied, 0) AS dissatisfied,
    coalesce(second_round_sent, 0) AS second_round_sent, coalesce(cases, 0) AS cases,
    coalesce(recovered, 0) AS recovered, coalesce(recovery_due, 0) AS recovery_due,
    coalesce(opted_out, 0) AS opted_out
FROM campaign_ids
LEFT JOIN actions USING (campaign_id)
LEFT JOIN replies USING (campaign_id)
LEFT JOIN ratings USING (campaign_id)
LEFT JOIN cases USING (campaign_id)
LEFT JOIN opted USING (campaign_id)
ORDER BY campaign_id = '{NO_MESSAGE}', campaign_id  -- the opt-outs of no campaign last
"""
SUPPRESSION_SQL = f"""
SELECT campaign_id, suppression_reason, count(*) FROM care_actions
WHERE status = 'suppressed' AND round = 1 AND {IN_PERIOD.format(at="created_at")}
GROUP BY ALL ORDER BY ALL
"""
REPLIES_SQL = f"""
SELECT attribution, count(*) FROM evaluations WHERE {IN_PERIOD.format(at="received_at")}
GROUP BY ALL ORDER BY count(*) DESC
"""
OPT_OUTS_SQL = f"""
SELECT channel, count(*) FROM ({OPT_OUT_EVENTS_SQL.format(where=OPTED_IN_PERIOD)})
GROUP BY ALL ORDER BY ALL
"""
# The store managers' side: the cases opened in the period (as the monthly report dates them).
CASES_SQL = f"""
SELECT count(*) AS opened,
    count(*) FILTER {IN_SLA} AS contacted_in_sla,
    count(*) FILTER {SLA_DUE} AS sla_due,
    count(*) FILTER (m.escalated_at IS NOT NULL) AS escalated,
    count(*) FILTER (m.status = 'resolved') AS resolved,
    count(*) FILTER (m.status = 'recovered') AS recovered,
    count(*) FILTER {ACTIVE_SQL} AS still_to_do  -- open, contacted or unresolved: on the lists
FROM manager_cases m
WHERE {CASE_IN_PERIOD}
"""
# The period a report covers: the business dates first-round care (what the table's care
# figures count) was planned on, and the newest reply collected since the period began. Every
# reply the figures count came after the care or the case it answers (first rounds, second
# rounds, follow-ups), so each one up to it is in; newer replies, to later care, are the only
# others (the zone maps skip the history).
PERIOD_SQL = f"""
SELECT min(timezone($zone, created_at))::DATE, max(timezone($zone, created_at))::DATE,
    (SELECT strftime(timezone($zone, max(received_at)), '%Y-%m-%d %H:%M') FROM evaluations
     WHERE received_at >= $lo)
FROM care_actions WHERE round = 1 AND {IN_PERIOD.format(at="created_at")}
"""
# A store manager's list: the cases the page shows (every active one, and those closed in the
# last $shown days), the ones to do first, then the closed ones (resolved by the manager or
# recovered); the section follows the status as the page's and the mail's do. Times in the
# store's own zone.
DERIVED = ("csat", "response_rate", "recovery_rate")


@dataclass(frozen=True)
class Period:
    """What a report covers: care planned on these business dates, replies until then, and
    the dates its cases opened and its opt-outs came (the report's bounds, either open)."""

    first: date | None
    last: date | None
    last_reply: str | None  # business time, to the minute
    zone: str
    since: date | None = None
    until: date | None = None

    def describe(self) -> str:
        # the reply bound whatever was planned: the cases' figures count replies too
        replies = f"; replies collected up to {self.last_reply}" if self.last_reply else ""
        care = (
            f"Care planned {self.first} to {self.last} ({self.zone})"
            if self.first
            else f"No first-round care planned in this period ({self.zone})"
        )
        return f"{care}; cases opened and opt-outs {self.dated()}{replies}."

    def dated(self) -> str:
        if self.since and self.until:
            return f"from {self.since} to {self.until}"
        if self.since or self.until:
            return f"from {self.since}" if self.since else f"up to {self.until}"
        return "of every date"


@dataclass(frozen=True)
class LoopReport:
    campaigns: list[dict[str, Any]]
    suppressed: dict[str, dict[str, int]]
    replies: dict[str, int]  # every reply kept, by how it was attributed
    opt_outs: dict[str, int]  # by channel, whatever the source (reply, link, provider)
    period: Period
    cases: dict[str, Any]  # opened, contacted within the SLA, escalated, recovered...
    columns: tuple[str, ...] = ()  # the campaign figures' names, known with no campaign yet

    def totals(self) -> dict[str, Any]:
        keys = [k for k in self.columns if k != "campaign_id" and k not in DERIVED]
        total: dict[str, Any] = {k: sum(int(c[k] or 0) for c in self.campaigns) for k in keys}
        return with_rates(total)


def percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def csat(satisfied: int, rated: int) -> float | None:
    """CSAT: the share of ratings that are 4 or 5, in percent."""
    return percent(satisfied, rated)


def with_rates(row: dict[str, Any]) -> dict[str, Any]:
    """CSAT; response rate: surveys answered with a rating, per survey sent; recovery rate:
    insights.kpis's, cases recovered per case whose outcome is due (the monthly report's
    definition). None where nothing was asked."""
    row["csat"] = csat(row.get("satisfied", 0), row.get("rated", 0))
    row["response_rate"] = percent(row.get("rated", 0), row.get("surveyed", 0))
    row["recovery_rate"] = percent(row.get("recovered", 0), row.get("recovery_due", 0))
    return row


def _stored_bounds(since: date | None, until: date | None) -> dict[str, datetime]:
    """The stored instants around business dates ``since`` to ``until`` (either open): a
    month's report reads its month's row groups, not the history's."""
    lo, hi = stored_range(since or EARLIEST, until + timedelta(days=1) if until else LATEST)
    return {"lo": lo, "hi": hi}


EARLIEST, LATEST = date(1900, 1, 2), date(9999, 12, 30)


def loop_report(
    con: duckdb.DuckDBPyConnection,
    zone: str = "Asia/Shanghai",
    since: date | None = None,
    until: date | None = None,
    *,
    now: datetime | None = None,
    sla_hours: int = 48,
    reply_window_hours: int = 72,
) -> LoopReport:
    """The loop's figures for care planned on business dates ``since`` to ``until``."""
    scope = {"zone": zone, "since": since, "until": until, **_stored_bounds(since, until)}
    due = {"now": now or utc_now(), "window": reply_window_hours}
    cursor = con.execute(LOOP_SQL, {**scope, **due})
    names = [d[0] for d in cursor.description]  # known even with no campaign yet
    campaigns = [with_rates(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]
    suppressed: dict[str, dict[str, int]] = {}
    for campaign_id, reason, n in con.execute(SUPPRESSION_SQL, scope).fetchall():
        suppressed.setdefault(campaign_id, {})[reason] = n
    replies = dict(con.execute(REPLIES_SQL, scope).fetchall())
    opt_outs = dict(con.execute(OPT_OUTS_SQL, scope).fetchall())
    first, last, last_reply = con.execute(PERIOD_SQL, scope).fetchone() or (None,) * 3
    period = Period(first, last, last_reply, zone, since, until)
    cases = query_dicts(con, CASES_SQL, {**scope, "sla": sla_hours, "now": now or utc_now()})[0]
    cases["sla_compliance"] = percent(cases["contacted_in_sla"], cases["sla_due"])
    return LoopReport(campaigns, suppressed, replies, opt_outs, period, cases, tuple(names))


def write_store_lists(
    con: duckdb.DuckDBPyConnection, directory: Path, now: datetime
) -> dict[str, int]:
    """One CSV per store manager with the cases their page shows at ``now``, every store's
    (one with none listed has the header alone, so a re-run leaves no older list of its
    behind, and no manager is left looking for a file); returns rows per store. Every
    store's file name is checked before anything is written (an id an older version let in
    names no list: the command says which)."""
    private_dir(directory)
    listed = con.sql(CASE_LIST_SQL, params={"now": now, "shown": LISTED_SHOWN_DAYS}).pl()
    stores = listed.get_column("store_id").unique(maintain_order=True).to_list()
    # every other store's header-only list, where its id can name a file (an id an older
    # version let in names none, and a list of nothing is no reason to stop the report)
    listing = set(stores)
    stores += [
        store_id
        for (store_id,) in con.execute("SELECT store_id FROM stores ORDER BY 1").fetchall()
        if store_id not in listing and is_plain_id(store_id)
    ]
    paths = {store_id: path_inside(directory, store_id, ".csv") for store_id in stores}
    for old in directory.glob("*.csv"):
        old.unlink()
    return write_private_csvs(listed, "store_id", paths)


def stores_listing(store_rows: dict[str, int]) -> int:
    """The stores whose lists hold a case (every store has its file: write_store_lists)."""
    return sum(1 for rows in store_rows.values() if rows)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value}"


def _campaign_row(c: dict[str, Any]) -> str:
    return (
        f"| {c['campaign_id']} | {c['targeted']} | {c['suppressed']} | {c['held_out']} | "
        f"{c['sent']} ({c['sent_sms']}/{c['sent_email']}/{c['sent_voice']}) | {c['replied']} | "
        f"{_shown(c['response_rate'])} | {c['rated']} | {_shown(c['csat'])} | "
        f"{c['dissatisfied']} | {c['second_round_sent']} | {c['recovered']} | "
        f"{_shown(c['recovery_rate'])} | {c['opted_out']} |"
    )


def render_markdown(report: LoopReport, store_rows: dict[str, int], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        report.period.describe(),
        "",
        *_campaign_table(report),
        *_section(
            "Opt-outs, by channel",
            "By reply (STOP, TD, 退订), unsubscribe link or provider refusal, in the period; "
            "each stops every later send on that channel.",
            [f"- {channel}: {n}" for channel, n in report.opt_outs.items()] or ["- none"],
        ),
        *_section(
            "Suppressed, by reason",
            "",
            [
                f"- {campaign_id}: " + ", ".join(f"{r} {n}" for r, n in reasons.items())
                for campaign_id, reasons in report.suppressed.items()
            ]
            or ["- none"],
        ),
        *_section(
            "Replies, by attribution",
            "Every reply received in the period is kept: matched to the survey it answers, "
            "late (after the reply window), to no open survey, or from an unknown number.",
            [f"- {kind}: {n}" for kind, n in report.replies.items()] or ["- none"],
        ),
        *_case_sections(report, store_rows),
    ]
    return "\n".join(lines) + "\n"


def _percent_said(value: Any) -> str:
    """``: 61.7%``; nothing where no case is due yet (it read "(-% of the cases ...)")."""
    return "" if value is None else f": {_shown(value)}%"


def _case_sections(report: LoopReport, store_rows: dict[str, int]) -> list[str]:
    return [
        *_section(
            "Store managers' cases",
            "Cases opened in the period. SLA compliance: first contact within the SLA, per "
            "case whose SLA has passed or that was contacted"
            + _percent_said(report.cases["sla_compliance"])
            + ".",
            [f"- {name.replace('_', ' ')}: {_shown(n)}" for name, n in report.cases.items()],
        ),
        *_section(
            "Store managers' dissatisfied lists",
            f"{sum(store_rows.values())} cases listed across {stores_listing(store_rows)} stores: "
            f"{LISTED_PERIOD} (one CSV per store in store_lists/: the ones to do first, the "
            "closed ones after; times in the store's own timezone).",
            [],
        ),
    ]


def _campaign_table(report: LoopReport) -> list[str]:
    return [
        "Care planned in the period, and the cases and opt-outs dated in it. Response rate: "
        "surveys answered with a rating, per survey sent. CSAT: ratings of 4-5 per rating. "
        "Recovery rate: cases recovered (second round or follow-up rated 4-5), per case whose "
        "outcome is due (recovered, second round rated, or its reply window over). "
        "Opted out: opt-outs put down to the campaign of the latest message on their channel, "
        f"when the opt-out came less than {OPT_OUT_DAYS} days after that message (the monthly "
        "opt-out rate counts the messages followed by an opt-out within the same days, by the "
        "month each was sent).",
        "",
        "| campaign | targeted | suppressed | held out | sent (sms/email/voice) | replied | "
        "response % | rated | CSAT % | dissatisfied | 2nd round sent | recovered | "
        "recovery % | opted out |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_campaign_row(c) for c in report.campaigns),
        _campaign_row({"campaign_id": "**all**", **report.totals()}),
    ]


def _section(heading: str, text: str, items: list[str]) -> list[str]:
    return ["", f"## {heading}", "", *([text, ""] if text else []), *items]


@dataclass(frozen=True)
class WrittenReport:
    report: LoopReport
    store_rows: dict[str, int]
    path: Path


def write_reports(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    title: str,
    zone: str,
    since: date | None = None,
    until: date | None = None,
    *,
    now: datetime | None = None,
    sla_hours: int = 48,
    reply_window_hours: int = 72,
    file_name: str = "loop_report.md",
    variants: list[VariantReport] | None = None,
) -> WrittenReport:
    """The loop report (Markdown, ``file_name`` in ``directory``) of care planned on business
    dates ``since`` to ``until`` (each open-ended when None) and one dissatisfied-customer
    CSV per store manager. ``variants``: the message tests as of ``now`` when the caller has
    them already (the monthly report does): each reads its campaign's whole test."""
    at = now or utc_now()
    report = loop_report(
        con, zone, since, until, now=at, sla_hours=sla_hours,
        reply_window_hours=reply_window_hours,
    )  # fmt: skip
    store_rows = write_store_lists(con, directory / "store_lists", at)
    path = directory / file_name
    if variants is None:
        variants = variant_reports(con, at, reply_window_hours)
    tests = variant_markdown(variants)
    write_private_text(path, render_markdown(report, store_rows, title) + tests)
    return WrittenReport(report, store_rows, path)


def summary_rows(report: LoopReport) -> list[tuple[str, Any]]:
    """The loop's figures, step by step: what the demo prints at its end."""
    total = report.totals()
    rows: list[tuple[str, Any]] = [("period", report.period.describe())]
    rows += [
        (f"targeted: {c['campaign_id']}", c["targeted"])
        for c in report.campaigns
        if c["campaign_id"] != NO_MESSAGE  # opt-outs' row: it targets nobody
    ]
    reasons: dict[str, int] = {}
    for by_reason in report.suppressed.values():
        for reason, n in by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + n
    rows += [(f"suppressed: {reason}", n) for reason, n in sorted(reasons.items())]
    rows += [
        ("held out", total.get("held_out", 0)),
        ("sent: sms", total.get("sent_sms", 0)),
        ("sent: email", total.get("sent_email", 0)),
        ("sent: voice", total.get("sent_voice", 0)),
        ("surveyed", total.get("surveyed", 0)),
        ("replied", total.get("replied", 0)),
        ("rated", total.get("rated", 0)),
        ("response rate (% of surveys rated)", total.get("response_rate")),
        ("CSAT (% of ratings 4-5)", total.get("csat")),
        ("dissatisfied", total.get("dissatisfied", 0)),
        ("sent a second round", total.get("second_round_sent", 0)),
        ("recovered", total.get("recovered", 0)),
        ("recovery rate (% of cases due)", total.get("recovery_rate")),
        ("opted out", total.get("opted_out", 0)),
        ("cases opened in the period", report.cases["opened"]),
        ("cases contacted within the SLA (%)", report.cases["sla_compliance"]),
        ("cases escalated", report.cases["escalated"]),
        ("cases resolved (their status now)", report.cases["resolved"]),
        ("cases recovered", report.cases["recovered"]),
        ("cases opened in the period still to do", report.cases["still_to_do"]),
    ]
    return rows
