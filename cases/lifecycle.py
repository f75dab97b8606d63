"""How a case moves, in the warehouse: the events collect finds, handed to the state machine
(``cases.machine``), which alone decides what each does.

The managers' changes come through the inbox (``case_event`` items from the service); the
customer's ratings of each round come from the evaluations collect has just taken in; a
second round left unanswered for the reply window is an event too. Every event, moved, kept
or refused, is kept in ``case_events``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from cases.machine import Event, apply_events, apply_rows, states_where
from inbox.inbox import InboxItem


def ingest_case_events(con: duckdb.DuckDBPyConnection, items: list[InboxItem]) -> int:
    """Managers' changes, each an event (kept with its note even when the case's state no
    longer allows it: it was recovered meanwhile, say). Returns the changes taken."""
    return apply_rows(
        con,
        [
            {
                "event_key": f"inbox:{item.dedupe_key}",
                "case_id": item.payload["case_id"],
                "store_id": item.payload["store_id"],
                "event": item.payload["action"],
                "occurred_at": datetime.fromisoformat(item.payload["at"]),
                "actor": f"manager:{item.payload['store_id']}",
                "note": item.payload.get("note") or None,
            }
            for item in items
        ],
    )


# A case whose second round got no answer within the reply window: an event at the moment
# the window closed.
UNANSWERED = """
SELECT 'no-answer:' || m.evaluation_id AS event_key, m.evaluation_id AS case_id,
       NULL AS store_id, $event AS event, a.sent_at + to_seconds($window) AS occurred_at,
       'system' AS actor, 'no answer to the second round' AS note, NULL AS score,
       NULL AS comment
FROM manager_cases m JOIN care_actions a ON a.action_id = m.second_round_action_id
WHERE list_contains($states, m.status) AND a.sent_at IS NOT NULL
  AND a.sent_at + to_seconds($window) <= $now
  AND NOT EXISTS (SELECT 1 FROM case_ratings r WHERE r.action_id = a.action_id)
"""


def unanswered_cases(con: duckdb.DuckDBPyConnection, now: datetime, window: timedelta) -> int:
    """Cases whose second round went unanswered, after ``update_cases`` (its case_ratings).
    Returns the cases it moved or marked."""
    params = {
        "now": now,
        "window": int(window.total_seconds()),
        "event": str(Event.NO_ANSWER),
        "states": states_where(Event.NO_ANSWER),
    }
    return apply_events(con, UNANSWERED, params)


# The ratings that can move a case, each with its case and the part of the case it rates:
# the latest of each case's survey, second round and follow-ups, read once a collect.
# action_ratings is a window over every evaluation ever received, and reading it once per
# statement made a collect's cost follow the history.
CASE_RATINGS = """
CREATE OR REPLACE TEMP TABLE case_ratings AS
WITH parts AS (
    SELECT evaluation_id AS case_id, action_id, 'survey' AS part FROM manager_cases
    UNION ALL
    SELECT evaluation_id, second_round_action_id, 'second_round' FROM manager_cases
    WHERE second_round_action_id IS NOT NULL
    UNION ALL
    SELECT a.parent_evaluation_id, a.action_id, 'follow_up' FROM care_actions a
    WHERE a.round = 3 AND a.parent_evaluation_id IN (SELECT evaluation_id FROM manager_cases)
)
SELECT p.case_id, p.part, r.*
FROM parts p JOIN action_ratings r ON r.action_id = p.action_id
WHERE p.part <> 'survey' OR r.evaluation_id <> p.case_id  -- the rating that opened the case
"""

# The customer's ratings, as events: the second round's, the follow-ups', and another reply
# to the survey the case came from (it updates what the case says, and opens nothing).
RATINGS = """
SELECT 'rating:' || evaluation_id AS event_key, case_id, NULL AS store_id,
       CASE WHEN part = 'survey' THEN 'rated_again'
            WHEN part = 'second_round' AND score >= 4 THEN 'second_round_good'
            WHEN part = 'second_round' THEN 'second_round_poor'
            WHEN score >= 4 THEN 'follow_up_good'
            WHEN score = 3 THEN 'follow_up_neutral'
            ELSE 'follow_up_bad' END AS event,
       received_at AS occurred_at, 'customer' AS actor,
       CASE part WHEN 'survey' THEN 'rated the survey again '
                 WHEN 'second_round' THEN 'second round rated ' ELSE 'follow-up rated ' END
       || score || '/5' || coalesce(': ' || comment, '') AS note,
       score, comment
FROM case_ratings
"""


def update_cases(con: duckdb.DuckDBPyConnection) -> int:
    """The customers' ratings move their cases; returns the ratings taken."""
    con.execute(CASE_RATINGS)
    return apply_events(con, RATINGS)
