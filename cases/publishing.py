"""Each store's board, from the warehouse into the service's database (``cases.board``), which
the managers' page reads; the morning digests list the same rows.

A publish sends only what changed: the cases whose board copy may be out of date
(``manager_cases.board_stale``, set by the case machine, a new case and a reload of the
customer's details), the cases not on the board yet, and those whose second round's status is
not the one last sent (``board_second_round``; looked at for SETTLING_DAYS after the second
round was made, which may be days after the case's rating when it was collected late: sent,
delivered or expired by then); and it takes off the cases no longer listed.
Its cost follows the day's changes, not the backlog on the boards. A publish with another
shape (the SLA, how long closed cases stay, the document's version) replaces every board, as
the first one does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from cases.board import Board, BoardUpdate
from warehouse.db import query_dicts, register_frame
from warehouse.figures import LISTED_SHOWN_DAYS, LISTED_SQL

CLOSED_SHOWN_DAYS = LISTED_SHOWN_DAYS  # a board shows closed cases this long after they closed
# A second round's news (sent, delivered, failed, expired) comes within days of its making;
# for this long a publish compares its status with the one the board shows. Later
# news of it reaches the board with the case's next change.
SETTLING_DAYS = 7
DOCUMENT_VERSION = 1  # of a case's board document: a new one replaces every board once


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
       (SELECT list({{{{'at': e.occurred_at, 'actor': e.actor, 'from': e.from_status,
                     'to': e.to_status, 'note': e.note, 'accepted': e.accepted}}}}
                    ORDER BY e.applied, e.occurred_at, e.event_key)
        FROM case_events e WHERE e.evaluation_id = m.evaluation_id) AS events
FROM {{cases}}
JOIN subscribers s USING (subscriber_id)
LEFT JOIN {{actions}} first ON first.action_id = m.action_id
LEFT JOIN {{actions}} second ON second.action_id = m.second_round_action_id
WHERE {LISTED_SQL}
"""
# A publish's cases (``board_sending``: a day's changes, not the backlog) come first, and their
# actions are looked up by key before the case rows are read: joined after every listed case,
# as the whole board is, they read the outbox and the customers whole (3 s of a publish of
# 1,200 cases on 10 million customers with 90 days of history; 0.7 s this way).
SENDING_CASES = "board_sending b JOIN manager_cases m ON m.evaluation_id = b.case_id"
SENDING_ACTIONS_SQL = f"""
CREATE OR REPLACE TEMP TABLE board_sending_actions AS
SELECT a.action_id, a.occasion, a.channel, a.status, a.offer_code FROM care_actions a
SEMI JOIN (
    SELECT m.action_id FROM {SENDING_CASES}
    UNION ALL SELECT m.second_round_action_id FROM {SENDING_CASES}
) k ON k.action_id = a.action_id
"""
# Every listed case, and whether it must be sent (see the module's docstring).
LISTED_CASES_SQL = f"""
CREATE OR REPLACE TEMP TABLE board_listed AS
SELECT m.evaluation_id AS case_id, second.status AS second_round,
    coalesce(m.board_stale, true) OR NOT $partial
        OR m.evaluation_id NOT IN (SELECT case_id FROM board_on_page)
        OR (second.action_id IS NOT NULL AND second.status IS DISTINCT FROM m.board_second_round)
        AS send
FROM manager_cases m
-- a second round made within the settling days: the outbox before is skipped
LEFT JOIN (
    SELECT action_id, status FROM care_actions WHERE created_at >= $now - to_days($settling)
) second ON second.action_id = m.second_round_action_id
WHERE {LISTED_SQL}
"""


def publish_boards(
    con: duckdb.DuckDBPyConnection,
    board: Board,
    now: datetime,
    sla_hours: int,
    collected_up_to: int,
) -> int:
    """What changed on the boards into the service's database (every board when its shape
    changed); returns the cases sent."""
    shape = f"v{DOCUMENT_VERSION} sla={sla_hours}h closed={CLOSED_SHOWN_DAYS}d"
    whole = board.shape() != shape
    on_page = pl.DataFrame(
        {"case_id": [] if whole else board.case_ids()}, schema={"case_id": pl.String}
    )
    register_frame(con, "board_on_page", on_page)
    try:
        params = {"now": now, "shown": CLOSED_SHOWN_DAYS, "settling": SETTLING_DAYS}
        con.execute(LISTED_CASES_SQL, {**params, "partial": not whole})
        removed = [
            row[0]
            for row in con.execute(
                "SELECT case_id FROM board_on_page ANTI JOIN board_listed USING (case_id)"
            ).fetchall()
        ]
    finally:
        con.unregister("board_on_page")
    stores = query_dicts(con, BOARD_STORES_SQL, {})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE board_sending AS SELECT case_id FROM board_listed WHERE send"
    )
    con.execute(SENDING_ACTIONS_SQL)
    sending = BOARD_CASES_SQL.format(cases=SENDING_CASES, actions="board_sending_actions")
    cases = _cases(con, sending, now, sla_hours, CLOSED_SHOWN_DAYS)
    update = BoardUpdate(stores, cases, removed, whole=whole, shape=shape)
    board.publish(update, at=now, collected_up_to=collected_up_to)
    # on the board now: stale no more (a crash before this only sends them again)
    con.execute(
        "UPDATE manager_cases m SET board_stale = false, "
        "board_second_round = coalesce(l.second_round, m.board_second_round) "
        "FROM board_listed l WHERE l.send AND m.evaluation_id = l.case_id"
    )
    return len(cases)


def board_rows(
    con: duckdb.DuckDBPyConnection, now: datetime, sla_hours: int, shown_days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each store, and each case a manager sees: active ones, and those closed within
    ``shown_days``. The page's boards and the morning mail's lists both read these."""
    stores = query_dicts(con, BOARD_STORES_SQL, {})
    return stores, _cases(
        con,
        BOARD_CASES_SQL.format(cases="manager_cases m", actions="care_actions"),
        now,
        sla_hours,
        shown_days,
    )


def _cases(
    con: duckdb.DuckDBPyConnection, sql: str, now: datetime, sla_hours: int, shown_days: int
) -> list[dict[str, Any]]:
    cases = query_dicts(con, sql, {"sla": sla_hours, "now": now, "shown": shown_days})
    for case in cases:
        case["events"] = [{**e, "at": e["at"].isoformat()} for e in case["events"] or []]
    return cases


def sla_left(case: dict[str, Any], now: datetime) -> timedelta | None:
    """Time left before an uncontacted case is escalated; None once contacted or closed."""
    if case["status"] != "open" or case.get("contacted_at"):
        return None
    return datetime.fromisoformat(str(case["sla_due"])) - now
