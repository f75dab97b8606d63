"""Hand-built warehouse rows for tests: small, explicit, with defaults a test can override."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import duckdb

STORE = {
    "store_id": "ST1",
    "name": "上海1号店",
    "city": "Shanghai",
    "region": "East China",
    "timezone": "Asia/Shanghai",
    "manager_name": "王伟",
    "manager_email": "m1@example.com",
}


def add_store(con: duckdb.DuckDBPyConnection, **overrides: Any) -> dict[str, Any]:
    row = {**STORE, **overrides}
    con.execute(
        f"INSERT INTO stores ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )
    return row


def add_subscriber(
    con: duckdb.DuckDBPyConnection, subscriber_id: str, **overrides: Any
) -> dict[str, Any]:
    number = int("".join(ch for ch in subscriber_id if ch.isdigit()) or 0)
    row: dict[str, Any] = {
        "subscriber_id": subscriber_id,
        "name": f"客户{number}",
        "phone": f"+86138{number:08d}",
        "email": f"c{number}@example.com",
        "birthday": date(1990, 6, 15),
        "joined_on": date(2015, 4, 10),
        "tier": "standard",
        "home_store_id": "ST1",
        "timezone": "Asia/Shanghai",
        "locale": "zh-CN",
        "sms_consent": True,
        "email_consent": True,
        "voice_consent": True,
    }
    row.update(overrides)
    con.execute(
        f"INSERT INTO subscribers ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )
    return row


def add_visit(
    con: duckdb.DuckDBPyConnection,
    visit_id: str,
    subscriber_id: str,
    visited_at: datetime,
    store_id: str = "ST1",
    service_type: str = "repair",
) -> None:
    con.execute(
        "INSERT INTO store_visits VALUES (?, ?, ?, ?, ?)",
        [visit_id, subscriber_id, store_id, visited_at, service_type],
    )


def members(con: duckdb.DuckDBPyConnection, table: str = "plan_target") -> list[str]:
    return [r[0] for r in con.execute(f"SELECT subscriber_id FROM {table} ORDER BY 1").fetchall()]


def add_action(
    con: duckdb.DuckDBPyConnection,
    action_id: str,
    subscriber_id: str,
    *,
    campaign: str = "birthday",
    channel: str = "sms",
    recipient: str | None = None,
    sent_at: datetime | None = None,
    status: str = "sent",
    round: int = 1,
    store_id: str = "ST1",
    provider_id: str | None = None,
    sender: str = "+10000000000",
) -> None:
    con.execute(
        """INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
        subscriber_id, occasion, round, store_id, tier, locale, channel, recipient, body, survey,
        status, scheduled_at, created_at, sent_at, provider_id, updated_at, sender)
        VALUES (?, ?, 'run', ?, ?, 'occ', ?, ?, 'standard', 'zh-CN', ?, ?, 'hi', true, ?, ?, ?,
                ?, ?, ?, ?)""",
        [
            action_id,
            f"key-{action_id}",
            campaign,
            subscriber_id,
            round,
            store_id,
            channel,
            recipient,
            status,
            sent_at,
            sent_at,
            sent_at,
            provider_id or f"P-{action_id}",
            sent_at,
            sender,
        ],
    )


def add_sms_crowd(con: duckdb.DuckDBPyConnection, count: int) -> None:
    """``count`` subscribers reachable by SMS only, all born on June 15 (the default as-of)."""
    con.execute(
        """
        INSERT INTO subscribers
        SELECT 'S' || i, 'n', '+8613' || lpad(i::VARCHAR, 9, '0'), NULL, DATE '1990-06-15',
               DATE '2015-01-01', 'standard', 'ST1', 'Asia/Shanghai', 'zh-CN', true, false, false,
               NULL
        FROM range(?) t(i)""",
        [count],
    )


def add_listed_case(con: duckdb.DuckDBPyConnection, comment: str, sent_at: datetime) -> None:
    """Store ST1's one open case E1, from S1's birthday survey A1, saying ``comment``: what a
    store list shows."""
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=sent_at)
    con.execute(
        "INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, "
        "action_id, score, comment, opened_at, status) "
        "VALUES ('E1', 'ST1', 'S1', 'birthday', 'A1', 1, ?, now(), 'open')",
        [comment],
    )


def add_opt_out(
    con: duckdb.DuckDBPyConnection, subscriber: str, channel: str, at: datetime, source: str,
    key: str,
) -> None:  # fmt: skip
    """An opt-out of ``subscriber`` on ``channel`` at ``at``, evidenced by ``key``."""
    con.execute(
        "INSERT INTO opt_outs VALUES (?, ?, 'opt_out', ?, ?, ?)",
        [subscriber, channel, at, source, key],
    )
