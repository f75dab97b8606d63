"""How a case moves, in the warehouse: by its manager, by the customer's ratings, by silence.

A case moves open -> contacted -> resolved by its manager (``case_event`` items from the
service, through collect); the customer's ratings make it recovered or unresolved, and a
second round left unanswered for the reply window makes it unresolved. Every change, accepted
or not, is kept in ``case_events``. The moves a manager may make are ``cases.board.ALLOWED``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from cases.board import ALLOWED
from inbox.inbox import InboxItem

ACTIVE = ("open", "contacted", "unresolved")

CHANGE_SQL = """
UPDATE manager_cases SET status = $to, updated_at = $at,
    contacted_at = coalesce(contacted_at, $at),  -- a resolution means they spoke too
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


# A case whose second round got no answer within the reply window is unresolved: still its
# manager's to work, and shown as such.
UNANSWERED = """
FROM manager_cases m JOIN care_actions a ON a.action_id = m.second_round_action_id
WHERE m.status = 'open' AND a.sent_at IS NOT NULL AND a.sent_at + to_seconds($window) <= $now
  AND NOT EXISTS (SELECT 1 FROM case_ratings r WHERE r.action_id = a.action_id)
"""


def unanswered_cases(con: duckdb.DuckDBPyConnection, now: datetime, window: timedelta) -> int:
    """Cases whose second round went unanswered, after ``update_cases`` (its case_ratings)."""
    params = {"now": now, "window": int(window.total_seconds())}
    con.execute(
        f"""INSERT INTO case_events
        SELECT 'no-answer:' || m.evaluation_id, m.evaluation_id, $now, 'system', m.status,
               'unresolved', 'no answer to the second round', true
        {UNANSWERED} ON CONFLICT DO NOTHING""",
        params,
    )
    rows = con.execute(
        f"""UPDATE manager_cases SET status = 'unresolved', updated_at = $now
        WHERE evaluation_id IN (SELECT m.evaluation_id {UNANSWERED}) RETURNING 1""",
        params,
    ).fetchall()
    return len(rows)


# A customer's rating moves a case: its second round rated 4-5 closes it as recovered, 1-2
# makes it unresolved (its manager still has it); the follow-up after a manager's resolution
# rated 4-5 closes it as recovered, 1-2 reopens it (3 leaves the resolution standing).
SECOND_ROUND_RATED = """
SELECT m.evaluation_id AS case_id, m.status AS old, r.evaluation_id, r.score, r.comment,
       r.received_at, CASE WHEN r.score >= 4 THEN 'recovered' ELSE 'unresolved' END AS new
FROM manager_cases m JOIN case_ratings r ON r.action_id = m.second_round_action_id
WHERE m.recovered_score IS DISTINCT FROM r.score
"""
FOLLOW_UP_RATED = """
SELECT m.evaluation_id AS case_id, m.status AS old, r.evaluation_id, r.score, r.comment,
       r.received_at, CASE WHEN r.score >= 4 THEN 'recovered' ELSE 'open' END AS new
FROM manager_cases m
JOIN care_actions a ON a.parent_evaluation_id = m.evaluation_id AND a.round = 3
JOIN case_ratings r ON r.action_id = a.action_id
WHERE m.status = 'resolved' AND r.received_at >= m.closed_at AND r.score <> 3
"""


# The ratings that can move a case: the latest of each case's second round and follow-ups,
# read once a collect. action_ratings is a window over every evaluation ever received, and
# reading it once per statement (five a collect) made a collect's cost follow the history.
CASE_RATINGS = """
CREATE OR REPLACE TEMP TABLE case_ratings AS
SELECT r.* FROM action_ratings r
WHERE r.action_id IN (
    SELECT second_round_action_id FROM manager_cases
    UNION ALL
    SELECT a.action_id FROM care_actions a
    WHERE a.round = 3 AND a.parent_evaluation_id IN (SELECT evaluation_id FROM manager_cases))
"""


def update_cases(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(CASE_RATINGS)
    _rated(con, FOLLOW_UP_RATED)
    _rated(con, SECOND_ROUND_RATED, ", recovered_score = t.score")


def _rated(con: duckdb.DuckDBPyConnection, rated_sql: str, also_set: str = "") -> None:
    """Each rating's move, as the customer's event, then on the case."""
    con.execute(f"""
        INSERT INTO case_events
        SELECT 'rating:' || evaluation_id, case_id, received_at, 'customer', old, new, comment,
               true
        FROM ({rated_sql}) ON CONFLICT DO NOTHING""")
    con.execute(f"""
        UPDATE manager_cases SET status = t.new, updated_at = t.received_at,
            closed_at = CASE WHEN t.new = 'recovered' THEN t.received_at END {also_set}
        FROM ({rated_sql}) t WHERE manager_cases.evaluation_id = t.case_id""")
