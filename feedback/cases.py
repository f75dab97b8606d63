"""Store managers' cases in the warehouse: their changes, their events, their boards.

A case moves open -> contacted -> resolved by its manager (``case_event`` items from the
service, through collect); the customer's ratings make it recovered or unresolved. Every
change, accepted or not, is kept in ``case_events``. ``publish_boards`` hands each store's
board to the service's database (``feedback.board``), which the managers' page reads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from feedback.board import ALLOWED, Board
from feedback.inbox import InboxItem

ACTIVE = ("open", "contacted", "unresolved")
CLOSED_SHOWN_DAYS = 30  # a board shows closed cases this long after they closed

CHANGE_SQL = """
UPDATE manager_cases SET status = $to, updated_at = $at,
    contacted_at = CASE WHEN $to = 'contacted' THEN coalesce(contacted_at, $at)
                        ELSE contacted_at END,
    closed_at = CASE WHEN $to = 'resolved' THEN $at ELSE closed_at END
WHERE evaluation_id = $case AND store_id = $store AND list_contains($allowed, status)
RETURNING 1
"""


def ingest_case_events(con: duckdb.DuckDBPyConnection, items: list[InboxItem]) -> int:
    """Apply managers' changes in the order they were made; each becomes an event, kept
    even when the case's state no longer allows it (it was recovered meanwhile, say).
    Returns the changes accepted."""
    accepted = 0
    for item in items:
        change = item.payload
        row = con.execute(
            "SELECT status FROM manager_cases WHERE evaluation_id = ? AND store_id = ?",
            [change["case_id"], change["store_id"]],
        ).fetchone()
        at = datetime.fromisoformat(change["at"])
        allowed = list(ALLOWED.get(change["action"], ()))
        done = bool(
            row
            and con.execute(
                CHANGE_SQL,
                {"to": change["action"], "at": at, "case": change["case_id"],
                 "store": change["store_id"], "allowed": allowed},
            ).fetchall()
        )  # fmt: skip
        if row:
            record_event(
                con, f"inbox:{item.dedupe_key}", change["case_id"], at,
                f"manager:{change['store_id']}", row[0], change["action"],
                change.get("note"), done,
            )  # fmt: skip
        accepted += done
    return accepted


def record_event(
    con: duckdb.DuckDBPyConnection,
    key: str,
    case_id: str,
    at: datetime,
    actor: str,
    from_status: str | None,
    to_status: str,
    note: str | None,
    accepted: bool = True,
) -> None:
    con.execute(
        "INSERT INTO case_events VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [key, case_id, at, actor, from_status, to_status, note, accepted],
    )


BOARD_STORES_SQL = """
SELECT store_id, name, manager_name, timezone,
       coalesce(manager_locale, CASE WHEN timezone LIKE 'Asia/%' THEN 'zh-CN' ELSE 'en' END)
           AS locale
FROM stores ORDER BY store_id
"""
BOARD_CASES_SQL = """
SELECT m.evaluation_id AS case_id, m.store_id, m.status, m.score, m.comment,
       m.campaign_id, m.opened_at, m.contacted_at, m.closed_at, m.escalated_at,
       m.opened_at + to_hours($sla) AS sla_due,
       s.name AS customer, s.phone, s.email, s.locale,
       first.occasion, first.channel AS rated_on,
       second.channel AS second_round_channel, second.status AS second_round_status,
       second.offer_code AS second_round_offer,
       (SELECT list({'at': e.occurred_at, 'actor': e.actor, 'from': e.from_status,
                     'to': e.to_status, 'note': e.note} ORDER BY e.occurred_at)
        FROM case_events e WHERE e.evaluation_id = m.evaluation_id AND e.accepted) AS events
FROM manager_cases m
JOIN subscribers s USING (subscriber_id)
LEFT JOIN care_actions first ON first.action_id = m.action_id
LEFT JOIN care_actions second ON second.action_id = m.second_round_action_id
WHERE list_contains($active, m.status)
   OR coalesce(m.closed_at, m.updated_at, m.opened_at) >= $now - to_days($shown)
"""


def publish_boards(
    con: duckdb.DuckDBPyConnection,
    board: Board,
    now: datetime,
    sla_hours: int,
    collected_up_to: int,
) -> int:
    """Every store's board into the service's database; returns the cases published."""
    stores = _dicts(con, BOARD_STORES_SQL, {})
    cases = _dicts(
        con,
        BOARD_CASES_SQL,
        {"sla": sla_hours, "active": list(ACTIVE), "now": now, "shown": CLOSED_SHOWN_DAYS},
    )
    for case in cases:
        case["events"] = [{**e, "at": e["at"].isoformat()} for e in case["events"] or []]
    board.publish(stores, cases, at=now, collected_up_to=collected_up_to)
    return len(cases)


def _dicts(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def sla_left(case: dict[str, Any], now: datetime) -> timedelta | None:
    """Time left before an uncontacted case is escalated; None once contacted or closed."""
    if case["status"] != "open" or case.get("contacted_at"):
        return None
    return datetime.fromisoformat(str(case["sla_due"])) - now
