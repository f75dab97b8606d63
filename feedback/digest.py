"""Each morning each store manager gets their list: how many cases are open, due (the SLA
ends within a day) and escalated, their sign-in link, and the list itself as CSV and XLSX.
One mail per store per business day: a rerun sends nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from campaigns.channels.mail import File, Mailer, StaffMail
from careloop.files import csv_bytes, xlsx_bytes
from careloop.settings import Settings
from feedback.tokens import manager_link

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = (
    "section", "customer", "phone", "email", "campaign", "occasion", "score", "comment",
    "opened (store time)", "status", "escalated", "second round",
)  # fmt: skip
LIST_SQL = """
SELECT m.store_id,
       CASE WHEN m.status IN ('open', 'contacted', 'unresolved') THEN 'to do' ELSE 'closed' END
           AS section,
       s.name, s.phone, s.email, m.campaign_id, a.occasion, m.score, m.comment,
       strftime(timezone(st.timezone, m.opened_at), '%Y-%m-%d %H:%M') AS opened,
       m.status, m.escalated_at IS NOT NULL AS escalated,
       CASE WHEN r2.action_id IS NOT NULL THEN r2.channel || ' ' || r2.status END AS second,
       m.status = 'open' AND m.contacted_at IS NULL AND m.escalated_at IS NULL
           AND m.opened_at + to_hours($sla) <= $now + INTERVAL 1 DAY AS due
FROM manager_cases m
JOIN stores st USING (store_id)
JOIN subscribers s USING (subscriber_id)
LEFT JOIN care_actions a ON a.action_id = m.action_id
LEFT JOIN care_actions r2 ON r2.action_id = m.second_round_action_id
WHERE m.status IN ('open', 'contacted', 'unresolved')
   OR coalesce(m.closed_at, m.updated_at, m.opened_at) >= $now - INTERVAL 7 DAY
ORDER BY m.store_id, section DESC, m.escalated_at IS NULL, m.opened_at
"""
TEXT = {
    "zh-CN": (
        "{store}：{open} 个待处理（{due} 个24小时内到期，{escalated} 个已升级）",
        "{manager}您好：\n\n今天的不满意客户名单见附件（CSV 和 Excel）。\n"
        "待处理 {open} 个，其中 {due} 个将在24小时内超过首次联系时限，"
        "{escalated} 个已升级到区域负责人。\n\n"
        "在手机上处理：{link}\n（链接 {days} 天内有效）",
    ),
    "en": (
        "{store}: {open} to do ({due} due within a day, {escalated} escalated)",
        "Dear {manager},\n\nToday's list of dissatisfied customers is attached (CSV and Excel).\n"
        "{open} to do: {due} reach the first-contact deadline within a day, {escalated} went to "
        "your regional contact.\n\nWork them on your phone: {link}\n"
        "(the link works for {days} days)",
    ),
}


def send_digests(
    con: duckdb.DuckDBPyConnection, mailer: Mailer, settings: Settings, now: datetime, day: date
) -> list[dict[str, Any]]:
    """Each manager's digest for ``day`` (business date); one row of figures per store."""
    rows = _by_store(con, settings.case_sla_hours, now)
    stores = con.execute(
        "SELECT store_id, name, manager_name, manager_email, timezone, "
        "coalesce(manager_locale, CASE WHEN timezone LIKE 'Asia/%' THEN 'zh-CN' ELSE 'en' END) "
        "FROM stores ORDER BY store_id"
    ).fetchall()
    sent = []
    for store_id, name, manager, email, _, locale in stores:
        key = f"digest:{store_id}:{day}"
        if con.execute("SELECT 1 FROM staff_mail_log WHERE key = ?", [key]).fetchone():
            continue
        cases = rows.get(store_id, [])
        counts = _counts(cases)
        mail = _mail(settings, key, store_id, name, manager, email, locale, cases, counts, now)
        result = mailer.send(mail, now)
        if result.ok:
            con.execute(
                "INSERT INTO staff_mail_log VALUES (?, 'digest', ?, ?, ?, ?, ?)",
                [key, store_id, email, len(cases), now, result.provider_id],
            )
        sent.append({"store": store_id, "cases": len(cases), **counts, "sent": result.ok})
    return sent


def _by_store(
    con: duckdb.DuckDBPyConnection, sla_hours: int, now: datetime
) -> dict[str, list[tuple[Any, ...]]]:
    by_store: dict[str, list[tuple[Any, ...]]] = {}
    for row in con.execute(LIST_SQL, {"sla": sla_hours, "now": now}).fetchall():
        by_store.setdefault(row[0], []).append(row[1:])
    return by_store


def _counts(cases: list[tuple[Any, ...]]) -> dict[str, int]:
    active = [c for c in cases if c[0] == "to do"]
    return {
        "open": len(active),
        "due": sum(bool(c[-1]) for c in active),
        "escalated": sum(bool(c[10]) for c in active),
    }


def _mail(
    settings: Settings, key: str, store_id: str, name: str, manager: str, email: str,
    locale: str, cases: list[tuple[Any, ...]], counts: dict[str, int], now: datetime,
) -> StaffMail:  # fmt: skip
    days = settings.manager_link_days
    secret = settings.link_secret.get_secret_value()
    link = manager_link(store_id, settings.public_url, secret, now, timedelta(days=days))
    subject, body = TEXT.get(locale, TEXT["en"])
    values = {"store": name, "manager": manager, "link": link, "days": days, **counts}
    table: list[Sequence[Any]] = [c[:-1] for c in cases]  # without the "due" flag
    stem = f"{store_id}-{key.rsplit(':', 1)[1]}"
    return StaffMail(
        key=key,
        to=email,
        subject=subject.format(**values),
        text=body.format(**values),
        attachments=(
            File(f"{stem}.csv", "text/csv", csv_bytes(COLUMNS, table)),
            File(f"{stem}.xlsx", XLSX, xlsx_bytes({"cases": (COLUMNS, table)})),
        ),
    )
