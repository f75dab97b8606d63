"""Each morning each store manager gets their list: how many cases are open, due (the SLA
ends within a day) and escalated, their sign-in link, and the list itself as CSV and XLSX.
One mail per store per business day: a rerun sends nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from campaigns.channels.mail import File, Mailer, StaffMail
from cases.machine import ACTIVE
from cases.publishing import board_rows, sla_left
from core.files import csv_bytes, xlsx_bytes
from core.settings import Settings
from core.tokens import manager_link

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = (
    "section", "customer", "phone", "email", "campaign", "occasion", "score", "comment",
    "opened (store time)", "status", "escalated", "second round",
)  # fmt: skip
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


CLOSED_DAYS = 7  # the mail lists cases closed this last week too


def send_digests(
    con: duckdb.DuckDBPyConnection, mailer: Mailer, settings: Settings, now: datetime, day: date
) -> list[dict[str, Any]]:
    """Each manager's digest for ``day`` (business date); one row of figures per store. The
    cases are the board's (cases.publishing.board_rows), so mail and page agree."""
    stores, cases = board_rows(con, now, settings.case_sla_hours, CLOSED_DAYS)
    sent = []
    for store in stores:
        key = f"digest:{store['store_id']}:{day}"
        if con.execute("SELECT 1 FROM staff_mail_log WHERE key = ?", [key]).fetchone():
            continue
        mine = [c for c in cases if c["store_id"] == store["store_id"]]
        rows: list[Sequence[Any]] = [_row(case, store["timezone"]) for case in _ordered(mine)]
        counts = _counts(mine, now)
        result = mailer.send(_mail(settings, key, store, rows, counts, now), now)
        if result.ok:
            con.execute(
                "INSERT INTO staff_mail_log VALUES (?, 'digest', ?, ?, ?, ?, ?)",
                [key, store["store_id"], store["manager_email"], len(rows), now,
                 result.provider_id],
            )  # fmt: skip
        sent.append({"store": store["store_id"], "cases": len(rows), **counts, "sent": result.ok})
    return sent


def _ordered(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """To do first (escalated first), then closed; oldest first within each."""
    return sorted(
        cases,
        key=lambda c: (c["status"] not in ACTIVE, c["escalated_at"] is None, c["opened_at"]),
    )


def _row(case: dict[str, Any], zone: str) -> list[Any]:
    opened = case["opened_at"].astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    second = case["second_round_channel"]
    return [
        "to do" if case["status"] in ACTIVE else "closed",
        case["customer"], case["phone"], case["email"], case["campaign_id"], case["occasion"],
        case["score"], case["comment"], opened, case["status"], case["escalated_at"] is not None,
        f"{second} {case['second_round_status']}" if second else None,
    ]  # fmt: skip


def _counts(cases: list[dict[str, Any]], now: datetime) -> dict[str, int]:
    active = [c for c in cases if c["status"] in ACTIVE]
    left = [sla_left(c, now) for c in active if c["escalated_at"] is None]
    return {
        "open": len(active),
        "due": sum(t is not None and t <= timedelta(days=1) for t in left),
        "escalated": sum(c["escalated_at"] is not None for c in active),
    }


def _mail(
    settings: Settings, key: str, store: dict[str, Any], table: list[Sequence[Any]],
    counts: dict[str, int], now: datetime,
) -> StaffMail:  # fmt: skip
    days = settings.manager_link_days
    secret = settings.link_secret.get_secret_value()
    link = manager_link(store["store_id"], settings.public_url, secret, now, timedelta(days=days))
    subject, body = TEXT.get(store["locale"], TEXT["en"])
    values = {"store": store["name"], "manager": store["manager_name"], "link": link}
    values |= {"days": days, **counts}
    stem = f"{store['store_id']}-{key.rsplit(':', 1)[1]}"
    return StaffMail(
        key=key,
        to=store["manager_email"],
        subject=subject.format(**values),
        text=body.format(**values),
        attachments=(
            File(f"{stem}.csv", "text/csv", csv_bytes(COLUMNS, table)),
            File(f"{stem}.xlsx", XLSX, xlsx_bytes({"cases": (COLUMNS, table)})),
        ),
    )
