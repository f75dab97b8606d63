"""The loop's figures, the first KPI report, and each store manager's dissatisfied list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from careloop.files import private_dir, write_private_csv, write_private_text

LOOP_SQL = """
WITH first AS (
    SELECT * FROM care_actions WHERE round = 1
), rated AS (
    SELECT a.campaign_id, a.round, r.score
    FROM action_ratings r JOIN care_actions a USING (action_id)
), replied AS (
    SELECT DISTINCT action_id FROM evaluations WHERE attribution = 'matched'
)
SELECT
    f.campaign_id,
    count(*) AS targeted,
    count(*) FILTER (f.status = 'suppressed') AS suppressed,
    count(*) FILTER (f.status = 'held_out') AS held_out,
    count(*) FILTER (f.sent_at IS NOT NULL) AS sent,
    count(*) FILTER (f.sent_at IS NOT NULL AND f.channel = 'sms') AS sent_sms,
    count(*) FILTER (f.sent_at IS NOT NULL AND f.channel = 'email') AS sent_email,
    count(*) FILTER (f.sent_at IS NOT NULL AND f.channel = 'voice') AS sent_voice,
    count(*) FILTER (f.status = 'delivered') AS delivered,
    count(*) FILTER (f.action_id IN (SELECT action_id FROM replied)) AS replied,
    (SELECT count(*) FROM rated r WHERE r.campaign_id = f.campaign_id AND r.round = 1) AS rated,
    (SELECT count(*) FROM rated r WHERE r.campaign_id = f.campaign_id AND r.round = 1
        AND r.score >= 4) AS satisfied,
    (SELECT count(*) FROM rated r WHERE r.campaign_id = f.campaign_id AND r.round = 1
        AND r.score <= 2) AS dissatisfied,
    (SELECT count(*) FROM care_actions s WHERE s.campaign_id = f.campaign_id AND s.round = 2
        AND s.sent_at IS NOT NULL) AS second_round_sent,
    (SELECT count(*) FROM manager_cases m WHERE m.campaign_id = f.campaign_id
        AND m.status = 'recovered') AS recovered
FROM first f
GROUP BY f.campaign_id
ORDER BY f.campaign_id
"""
SUPPRESSION_SQL = """
SELECT campaign_id, suppression_reason, count(*) FROM care_actions
WHERE status = 'suppressed' AND round = 1 GROUP BY ALL ORDER BY ALL
"""
REPLIES_SQL = """
SELECT attribution, count(*) FROM evaluations GROUP BY ALL ORDER BY count(*) DESC
"""
STORE_LIST_SQL = """
SELECT m.store_id, st.name AS store_name, st.manager_name, st.manager_email,
       m.subscriber_id, s.name AS customer_name, s.phone, s.email, s.locale,
       m.campaign_id, m.score, m.comment, m.opened_at, m.status,
       a.channel AS second_round_channel, a.status AS second_round_status, m.recovered_score
FROM manager_cases m
JOIN stores st USING (store_id)
JOIN subscribers s USING (subscriber_id)
LEFT JOIN care_actions a ON a.action_id = m.second_round_action_id
ORDER BY m.store_id, m.status = 'recovered', m.score, m.opened_at
"""


@dataclass(frozen=True)
class LoopReport:
    campaigns: list[dict[str, Any]]
    suppressed: dict[str, dict[str, int]]
    replies: dict[str, int]  # every reply kept, by how it was attributed
    columns: tuple[str, ...] = ()  # the campaign figures' names, known with no campaign yet

    def totals(self) -> dict[str, Any]:
        keys = [k for k in self.columns if k not in ("campaign_id", "csat")]
        total: dict[str, Any] = {k: sum(int(c[k] or 0) for c in self.campaigns) for k in keys}
        total["csat"] = csat(total.get("satisfied", 0), total.get("rated", 0))
        return total


def csat(satisfied: int, rated: int) -> float | None:
    """CSAT: the share of ratings that are 4 or 5, in percent."""
    return round(100.0 * satisfied / rated, 1) if rated else None


def loop_report(con: duckdb.DuckDBPyConnection) -> LoopReport:
    cursor = con.execute(LOOP_SQL)
    names = [d[0] for d in cursor.description]
    campaigns = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in campaigns:
        row["csat"] = csat(row["satisfied"], row["rated"])
    suppressed: dict[str, dict[str, int]] = {}
    for campaign_id, reason, n in con.execute(SUPPRESSION_SQL).fetchall():
        suppressed.setdefault(campaign_id, {})[reason] = n
    replies = dict(con.execute(REPLIES_SQL).fetchall())
    return LoopReport(campaigns, suppressed, replies, tuple(names))


def write_store_lists(con: duckdb.DuckDBPyConnection, directory: Path) -> dict[str, int]:
    """One CSV per store manager with their dissatisfied customers; returns rows per store."""
    private_dir(directory)
    for old in directory.glob("*.csv"):
        old.unlink()
    cursor = con.execute(STORE_LIST_SQL)
    names = [d[0] for d in cursor.description]
    by_store: dict[str, list[tuple[Any, ...]]] = {}
    for row in cursor.fetchall():
        by_store.setdefault(row[0], []).append(row)
    for store_id, rows in by_store.items():
        write_private_csv(directory / f"{store_id}.csv", names, rows)
    return {store: len(rows) for store, rows in by_store.items()}


def render_markdown(report: LoopReport, store_rows: dict[str, int], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| campaign | targeted | suppressed | held out | sent (sms/email/"
        "voice) | replied | rated | CSAT % | dissatisfied | 2nd round | recovered |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in [*report.campaigns, {"campaign_id": "**all**", **report.totals()}]:
        lines.append(
            f"| {c['campaign_id']} | {c['targeted']} | {c['suppressed']} | {c['held_out']} | "
            f"{c['sent']} ({c['sent_sms']}/{c['sent_email']}/{c['sent_voice']}) | {c['replied']}"
            f" | {c['rated']} | {c['csat'] if c['csat'] is not None else '-'} | "
            f"{c['dissatisfied']} | {c['second_round_sent']} | {c['recovered']} |"
        )
    lines += ["", "## Suppressed, by reason", ""]
    for campaign_id, reasons in report.suppressed.items():
        lines.append(f"- {campaign_id}: " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    lines += ["", "## Replies, by attribution", ""]
    lines.append(
        "Every reply is kept: matched to the survey it answers, late (after the reply "
        "window), to no open survey, or from an unknown number."
    )
    lines += ["", *(f"- {kind}: {n}" for kind, n in report.replies.items())]
    lines += [
        "",
        "## Store managers' dissatisfied lists",
        "",
        f"{sum(store_rows.values())} cases across {len(store_rows)} stores "
        "(one CSV per store in store_lists/).",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class WrittenReport:
    report: LoopReport
    store_rows: dict[str, int]
    path: Path


def write_reports(con: duckdb.DuckDBPyConnection, directory: Path, title: str) -> WrittenReport:
    """The KPI report (Markdown) and one dissatisfied-customer CSV per store manager."""
    report = loop_report(con)
    store_rows = write_store_lists(con, directory / "store_lists")
    path = directory / "kpi_report.md"
    write_private_text(path, render_markdown(report, store_rows, title))
    return WrittenReport(report, store_rows, path)


def summary_rows(report: LoopReport) -> list[tuple[str, Any]]:
    """The loop's figures, step by step: what the demo prints at its end."""
    total = report.totals()
    rows: list[tuple[str, Any]] = [
        (f"targeted: {c['campaign_id']}", c["targeted"]) for c in report.campaigns
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
        ("replied", total.get("replied", 0)),
        ("CSAT (% of ratings 4-5)", total.get("csat")),
        ("dissatisfied", total.get("dissatisfied", 0)),
        ("sent a second round", total.get("second_round_sent", 0)),
        ("recovered", total.get("recovered", 0)),
    ]
    return rows
