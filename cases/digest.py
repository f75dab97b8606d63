"""Each morning each store manager gets their list: how many cases are open, due (the SLA
ends within a day) and escalated, their sign-in link, and the list itself as CSV and XLSX.
One mail per store per business day, exactly once (cases.staff_mail): a rerun, even after a
crash between sending and recording, sends nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from campaigns.channels.mail import File, Mailer, StaffMail
from cases.machine import ACTIVE
from cases.publishing import board_rows, sla_left
from cases.staff_mail import Outgoing, logged, send_once, settle
from core.files import csv_bytes, plain_name, xlsx_bytes
from core.settings import Settings
from core.tokens import manager_link
from warehouse.db import Held, as_held
from warehouse.figures import CASE_LIST_SQL

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEXT = {
    "zh-CN": (
        "{store}：{open} 个待处理（{due} 个24小时内到期，{escalated} 个已升级）",
        "{manager}您好：\n\n今天的不满意客户名单见附件（CSV 和 Excel：待处理的，"
        "以及近 {closed_days} 天内关闭的）。\n"
        "待处理 {open} 个，其中 {due} 个将在24小时内超过首次联系时限，"
        "{escalated} 个已升级到区域负责人。\n\n"
        "在手机上处理：{link}\n（链接 {days} 天内有效）",
    ),
    "en": (
        "{store}: {open} to do ({due} due within a day, {escalated} escalated)",
        "Dear {manager},\n\nToday's list of dissatisfied customers is attached (CSV and Excel: "
        "the cases to do, and those closed in the last {closed_days} days).\n"
        "{open} to do: {due} reach the first-contact deadline within a day, {escalated} went to "
        "your regional contact.\n\nWork them on your phone: {link}\n"
        "(the link works for {days} days)",
    ),
}


CLOSED_DAYS = 7  # the mail lists cases closed this last week too


def send_digests(
    warehouse: Held | duckdb.DuckDBPyConnection,
    mailer: Mailer,
    settings: Settings,
    now: datetime,
    day: date,
) -> list[dict[str, Any]]:
    """Each manager's digest for ``day`` (business date), exactly once (cases.staff_mail); one
    row of figures per store mailed in this run. Its figures are the board's
    (cases.publishing.board_rows), so mail and page agree; its attachments are the list the
    report's store lists are (warehouse.figures.CASE_LIST_SQL), so the two files agree."""
    held = as_held(warehouse)
    settle(held, mailer, now)
    stores, cases = board_rows(held.con, now, settings.case_sla_hours, CLOSED_DAYS)
    done = logged(held.con, [_key(store, day) for store in stores])
    columns, lists = _lists(held.con, now)
    outgoing, figures = [], {}
    for store in stores:
        if (key := _key(store, day)) in done:
            continue
        mine = [c for c in cases if c["store_id"] == store["store_id"]]
        rows = lists.get(store["store_id"], [])
        counts = _counts(mine, now)
        mail = _mail(settings, key, store, (columns, rows), counts, now)
        outgoing.append(Outgoing(mail, "digest", store["store_id"], len(rows)))
        figures[key] = {"store": store["store_id"], "cases": len(rows), **counts}
    results = send_once(held, mailer, outgoing, now)
    return [{**figures[key], "sent": result.ok} for key, result in results.items()]


def _key(store: dict[str, Any], day: date) -> str:
    return f"digest:{store['store_id']}:{day}"


Table = tuple[list[str], list[Sequence[Any]]]  # a list's columns and rows


def _lists(con: duckdb.DuckDBPyConnection, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """The columns, and each store's rows, of the list the report's store lists have too
    (warehouse.figures' CASE_LIST_SQL): the cases to do, and those closed in the last
    CLOSED_DAYS."""
    listed = con.execute(CASE_LIST_SQL, {"now": now, "shown": CLOSED_DAYS})
    columns = [d[0] for d in listed.description]
    store = columns.index("store_id")
    rows: dict[str, list[Sequence[Any]]] = {}
    for row in listed.fetchall():
        rows.setdefault(row[store], []).append(row)
    return columns, rows


def _counts(cases: list[dict[str, Any]], now: datetime) -> dict[str, int]:
    active = [c for c in cases if c["status"] in ACTIVE]
    left = [sla_left(c, now) for c in active if c["escalated_at"] is None]
    return {
        "open": len(active),
        "due": sum(t is not None and t <= timedelta(days=1) for t in left),
        "escalated": sum(c["escalated_at"] is not None for c in active),
    }


def attachment_stem(store_id: str, key: str) -> str:
    """``ST1-2026-03-02``: the attachments' name, from a plain store id only (a mail program
    saves an attachment under its name)."""
    return plain_name(f"{store_id}-{key.rsplit(':', 1)[1]}")


def _mail(
    settings: Settings, key: str, store: dict[str, Any], table: Table,
    counts: dict[str, int], now: datetime,
) -> StaffMail:  # fmt: skip
    days = settings.manager_link_days
    secret = settings.link_secret.get_secret_value()
    link = manager_link(store["store_id"], settings.public_url, secret, now, timedelta(days=days))
    subject, body = TEXT.get(store["locale"], TEXT["en"])
    values = {"store": store["name"], "manager": store["manager_name"], "link": link}
    values |= {"days": days, "closed_days": CLOSED_DAYS, **counts}
    stem = attachment_stem(store["store_id"], key)
    return StaffMail(
        key=key,
        to=store["manager_email"],
        subject=subject.format(**values),
        text=body.format(**values),
        attachments=(
            File(f"{stem}.csv", "text/csv", csv_bytes(*table)),
            File(f"{stem}.xlsx", XLSX, xlsx_bytes({"cases": table})),
        ),
    )
