"""How a case moves, in the warehouse: the events collect finds, handed to the state machine
(``cases.machine``), which alone decides what each does.

The managers' changes come through the inbox (``case_event`` items from the service); the
customer's ratings of each round come from the evaluations collect has just taken in; a
second round left unanswered for the reply window is an event too. Every event, moved, kept
or refused, is kept in ``case_events``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from cases.machine import Event, apply_events, apply_rows, states_where
from cases.notes import FOLLOW_UP_RATED, NO_ANSWER, RATED_AGAIN, SECOND_ROUND_RATED
from inbox.inbox import InboxItem
from warehouse.db import ingest_mark


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
# the window closed. Not for a case its manager resolved meanwhile (asked the follow-up):
# reopened by the follow-up's 1-2, it is the follow-up's answer that counts, not the older
# silence, which once moved it to unresolved.
UNANSWERED = f"""
WITH due AS (
    SELECT m.evaluation_id, a.action_id, a.sent_at
    FROM manager_cases m JOIN care_actions a ON a.action_id = m.second_round_action_id
    WHERE list_contains($states, m.status) AND a.sent_at IS NOT NULL
      AND coalesce(m.follow_ups, 0) = 0
      AND a.sent_at + to_seconds($window) <= $now
      -- a case's window closed since collect last looked ($since: the last look, or the
      -- weeks a collect may have missed if later): older ones have their event (a range
      -- sent_at's zone maps answer)
      AND a.sent_at >= $since - to_seconds($window)
), answered AS (  -- the due ones' ratings, looked up by key, not the whole table
    SELECT r.action_id FROM latest_ratings r SEMI JOIN due USING (action_id)
)
SELECT 'no-answer:' || evaluation_id AS event_key, evaluation_id AS case_id,
       NULL AS store_id, $event AS event, sent_at + to_seconds($window) AS occurred_at,
       'system' AS actor, '{NO_ANSWER}' AS note, NULL AS score,
       NULL AS comment
FROM due WHERE action_id NOT IN (SELECT action_id FROM answered)
"""
MISSED_DAYS = 30  # looked at again each time, besides what came since the last look
CHECKED = "unanswered_checked"  # in ingest_state: the latest ``now`` looked at (epoch µs)


def unanswered_cases(con: duckdb.DuckDBPyConnection, now: datetime, window: timedelta) -> int:
    """Cases whose second round went unanswered (no rating of it by now, the ratings just
    collected included). Returns the cases it moved or marked."""
    checked = ingest_mark(con, CHECKED)
    since = now - timedelta(days=MISSED_DAYS)
    params = {
        "now": now,
        "window": int(window.total_seconds()),
        "event": str(Event.NO_ANSWER),
        "states": states_where(Event.NO_ANSWER),
        # collect may have run only without ``now`` for longer: look from the last look on
        "since": since if checked is None else min(since, _from_epoch_us(checked)),
    }
    moved = apply_events(con, UNANSWERED, params)
    con.execute(
        "INSERT INTO ingest_state VALUES ($name, epoch_us($now)) ON CONFLICT (name) "
        "DO UPDATE SET value = greatest(ingest_state.value, excluded.value)",
        {"name": CHECKED, "now": now},
    )
    return moved


def _from_epoch_us(value: int) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=value)


# The ratings that can move a case, each with its case and the part of the case it rates:
# the latest rating of each case's survey, second round and follow-ups, among the ratings
# that came since the last pass ($seen: latest_ratings.rated is numbered in the order they
# came). Every other rating has moved its case already. A case's second round and follow-ups
# are made after it opens, and the survey's latest rating before it opened is the one it
# opened from, so a new case has no rating the pass has not seen.
CASE_RATINGS = """
CREATE OR REPLACE TEMP TABLE case_ratings AS
WITH fresh AS (SELECT * FROM latest_ratings WHERE rated > $seen),
parts AS (
    SELECT evaluation_id AS case_id, action_id, 'survey' AS part FROM manager_cases
    WHERE action_id IN (SELECT action_id FROM fresh)
    UNION ALL
    SELECT evaluation_id, second_round_action_id, 'second_round' FROM manager_cases
    WHERE second_round_action_id IN (SELECT action_id FROM fresh)
    UNION ALL
    SELECT a.parent_evaluation_id, a.action_id, 'follow_up' FROM care_actions a
    WHERE a.round = 3 AND a.action_id IN (SELECT action_id FROM fresh WHERE round = 3)
      AND a.parent_evaluation_id IN (SELECT evaluation_id FROM manager_cases)
)
SELECT p.case_id, p.part, r.* EXCLUDE (rated)
FROM parts p JOIN fresh r ON r.action_id = p.action_id
WHERE p.part <> 'survey' OR r.evaluation_id <> p.case_id  -- the rating that opened the case
"""
SEEN = "case_ratings_seen"  # in ingest_state: the last latest_ratings.rated a pass read


# The customer's ratings, as events: the second round's, the follow-ups', and another reply
# to the survey the case came from (it updates what the case says, and opens nothing).
RATINGS = f"""
SELECT 'rating:' || evaluation_id AS event_key, case_id, NULL AS store_id,
       CASE WHEN part = 'survey' THEN 'rated_again'
            WHEN part = 'second_round' AND score >= 4 THEN 'second_round_good'
            WHEN part = 'second_round' THEN 'second_round_poor'
            WHEN score >= 4 THEN 'follow_up_good'
            WHEN score = 3 THEN 'follow_up_neutral'
            ELSE 'follow_up_bad' END AS event,
       received_at AS occurred_at, 'customer' AS actor,
       CASE part WHEN 'survey' THEN '{RATED_AGAIN}'
                 WHEN 'second_round' THEN '{SECOND_ROUND_RATED}' ELSE '{FOLLOW_UP_RATED}' END
       || score || '/5' || coalesce(': ' || comment, '') AS note,
       score, comment
FROM case_ratings
"""


def ratings_seen(con: duckdb.DuckDBPyConnection, after: int = 0) -> None:
    """Every rating so far counts as having moved its case (``after``: the mark it had, so
    only the ratings since are read). Collect's pass calls it once it has moved them; so do
    writers of a history whose cases already are as its ratings left them (the benchmarks')."""
    con.execute(
        "INSERT OR REPLACE INTO ingest_state "
        "SELECT ?, coalesce(max(rated), ?) FROM latest_ratings WHERE rated > ?",
        [SEEN, after, after],
    )


def update_cases(con: duckdb.DuckDBPyConnection) -> int:
    """The ratings that came since the last pass move their cases; returns those taken."""
    seen = ingest_mark(con, SEEN) or 0
    con.execute(CASE_RATINGS, {"seen": seen})
    taken = apply_events(con, RATINGS)
    ratings_seen(con, seen)
    return taken
