"""Each store's board, from the warehouse into the service's database (``cases.board``), which
the managers' page reads; the morning digests list the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from cases.board import Board
from warehouse.db import query_dicts
from warehouse.figures import LISTED_SHOWN_DAYS, LISTED_SQL

CLOSED_SHOWN_DAYS = LISTED_SHOWN_DAYS  # a board shows closed cases this long after they closed


BOARD_STORES_SQL = """
SELECT store_id, name, manager_name, manager_email, timezone,
       coalesce(manager_locale, CASE WHEN timezone LIKE 'Asia/%' THEN 'zh-CN' ELSE 'en' END)
           AS locale
FROM stores ORDER BY store_id
"""
BOARD_CASES_SQL = f"""
SELECT m.evaluation_id AS case_id, m.store_id, m.status, m.score, m.comment,
       m.campaign_id, m.opened_at, m.contacted_at, m.closed_at, m.escalated_at,
       m.opened_at + to_hours($sla) AS sla_due,
       s.name AS customer, s.phone, s.email, s.locale,
       first.occasion, first.channel AS rated_on,
       second.channel AS second_round_channel, second.status AS second_round_status,
       second.offer_code AS second_round_offer,
       -- in the order the machine applied them: each step starts where the last ended
       (SELECT list({{'at': e.occurred_at, 'actor': e.actor, 'from': e.from_status,
                     'to': e.to_status, 'note': e.note, 'accepted': e.accepted}}
                    ORDER BY e.applied, e.occurred_at, e.event_key)
        FROM case_events e WHERE e.evaluation_id = m.evaluation_id) AS events
FROM manager_cases m
JOIN subscribers s USING (subscriber_id)
LEFT JOIN care_actions first ON first.action_id = m.action_id
LEFT JOIN care_actions second ON second.action_id = m.second_round_action_id
WHERE {LISTED_SQL}
"""


def publish_boards(
    con: duckdb.DuckDBPyConnection,
    board: Board,
    now: datetime,
    sla_hours: int,
    collected_up_to: int,
) -> int:
    """Every store's board into the service's database; returns the cases published."""
    stores, cases = board_rows(con, now, sla_hours, CLOSED_SHOWN_DAYS)
    board.publish(stores, cases, at=now, collected_up_to=collected_up_to)
    return len(cases)


def board_rows(
    con: duckdb.DuckDBPyConnection, now: datetime, sla_hours: int, shown_days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each store, and each case a manager sees: active ones, and those closed within
    ``shown_days``. The page's boards and the morning mail's lists both read these."""
    stores = query_dicts(con, BOARD_STORES_SQL, {})
    params = {"sla": sla_hours, "now": now, "shown": shown_days}
    cases = query_dicts(con, BOARD_CASES_SQL, params)
    for case in cases:
        case["events"] = [{**e, "at": e["at"].isoformat()} for e in case["events"] or []]
    return stores, cases


def sla_left(case: dict[str, Any], now: datetime) -> timedelta | None:
    """Time left before an uncontacted case is escalated; None once contacted or closed."""
    if case["status"] != "open" or case.get("contacted_at"):
        return None
    return datetime.fromisoformat(str(case["sla_due"])) - now
