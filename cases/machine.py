"""The case lifecycle, written once: its states, the events that reach a case, and what each
event does in each state. Every writer of a case goes through here: the managers' changes
(collect, and the board the page shows), the customer's ratings of each round, the second
round left unanswered, escalation and the follow-up that could not be asked.

An event in a state either moves the case (to a new state), is kept (recorded in the case's
history, the state stands: news that changes nothing, or comes too late to change anything),
or is refused (a manager's change the state does not allow: recorded with its note, shown as
refused; a system writer never emits it). ``TABLE`` is the whole definition; the warehouse's
UPDATEs (``apply_events``) and the board's (``apply_on_board``) are both read off it, and the
README's table is ``markdown_table()``.

Two rules make the order in which events are applied not matter when a manager's change and
a customer's rating race (collect applies a batch's managers' changes before its ratings):
recovered is final, and a rating that came before a resolution never reopens it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import duckdb
import polars as pl

from warehouse.db import looked_up, register_frame
from warehouse.figures import ACTIVE_STATUSES


class State(StrEnum):
    OPEN = "open"  # a dissatisfied first-round rating: the manager has to call
    CONTACTED = "contacted"  # the manager reached the customer
    RESOLVED = "resolved"  # the manager sorted it; the follow-up asks the customer
    RECOVERED = "recovered"  # the customer said so: second round or follow-up rated 4-5
    UNRESOLVED = "unresolved"  # second round rated 1-3 or unanswered: still the manager's


class Event(StrEnum):
    CONTACTED = "contacted"
    RESOLVED = "resolved"
    RATED_AGAIN = "rated_again"
    SECOND_ROUND_GOOD = "second_round_good"
    SECOND_ROUND_POOR = "second_round_poor"
    NO_ANSWER = "no_answer"
    ESCALATED = "escalated"
    FOLLOW_UP_GOOD = "follow_up_good"
    FOLLOW_UP_NEUTRAL = "follow_up_neutral"
    FOLLOW_UP_BAD = "follow_up_bad"
    NOT_ASKED = "not_asked"


MEANS = {
    Event.CONTACTED: "manager marks it contacted",
    Event.RESOLVED: "manager marks it resolved",
    Event.RATED_AGAIN: "customer replies again to the first-round survey",
    Event.SECOND_ROUND_GOOD: "customer rates the second round 4-5",
    Event.SECOND_ROUND_POOR: "customer rates the second round 1-3",
    Event.NO_ANSWER: "second round unanswered for the reply window",
    Event.ESCALATED: "not contacted within the SLA: told the region",
    Event.FOLLOW_UP_GOOD: "customer rates the follow-up 4-5",
    Event.FOLLOW_UP_NEUTRAL: "customer rates the follow-up 3",
    Event.FOLLOW_UP_BAD: "customer rates the follow-up 1-2",
    Event.NOT_ASKED: "follow-up not sent (opted out, no consent, no contact)",
}


KEPT = "kept"
REFUSED = "refused"
Outcome = State | str  # a State (moved), KEPT or REFUSED

INITIAL = State.OPEN
# On the manager's to-do list: the warehouse's lists count the same statuses (warehouse/figures).
ACTIVE = tuple(State(s) for s in ACTIVE_STATUSES)
CLOSED = (State.RESOLVED, State.RECOVERED)
MET = (State.CONTACTED, State.RESOLVED)  # moving here means the manager spoke to them
MANAGER_EVENTS = (Event.CONTACTED, Event.RESOLVED)

_E, _S = Event, State
TABLE: dict[State, dict[Event, Outcome]] = {
    _S.OPEN: {
        _E.CONTACTED: _S.CONTACTED, _E.RESOLVED: _S.RESOLVED, _E.RATED_AGAIN: KEPT,
        _E.SECOND_ROUND_GOOD: _S.RECOVERED, _E.SECOND_ROUND_POOR: _S.UNRESOLVED,
        _E.NO_ANSWER: _S.UNRESOLVED, _E.ESCALATED: KEPT,
        _E.FOLLOW_UP_GOOD: _S.RECOVERED, _E.FOLLOW_UP_NEUTRAL: KEPT, _E.FOLLOW_UP_BAD: KEPT,
        _E.NOT_ASKED: REFUSED,
    },
    _S.CONTACTED: {
        _E.CONTACTED: REFUSED, _E.RESOLVED: _S.RESOLVED, _E.RATED_AGAIN: KEPT,
        _E.SECOND_ROUND_GOOD: _S.RECOVERED, _E.SECOND_ROUND_POOR: KEPT,
        _E.NO_ANSWER: KEPT, _E.ESCALATED: REFUSED,
        _E.FOLLOW_UP_GOOD: _S.RECOVERED, _E.FOLLOW_UP_NEUTRAL: KEPT, _E.FOLLOW_UP_BAD: KEPT,
        _E.NOT_ASKED: REFUSED,
    },
    _S.RESOLVED: {
        _E.CONTACTED: REFUSED, _E.RESOLVED: REFUSED, _E.RATED_AGAIN: KEPT,
        _E.SECOND_ROUND_GOOD: _S.RECOVERED, _E.SECOND_ROUND_POOR: KEPT,
        _E.NO_ANSWER: REFUSED, _E.ESCALATED: REFUSED,
        _E.FOLLOW_UP_GOOD: _S.RECOVERED, _E.FOLLOW_UP_NEUTRAL: KEPT,
        _E.FOLLOW_UP_BAD: _S.OPEN,  # only a rating newer than the resolution (decide)
        _E.NOT_ASKED: KEPT,
    },
    _S.RECOVERED: {
        _E.CONTACTED: REFUSED, _E.RESOLVED: REFUSED, _E.RATED_AGAIN: KEPT,
        _E.SECOND_ROUND_GOOD: KEPT, _E.SECOND_ROUND_POOR: KEPT,
        _E.NO_ANSWER: REFUSED, _E.ESCALATED: REFUSED,
        _E.FOLLOW_UP_GOOD: KEPT, _E.FOLLOW_UP_NEUTRAL: KEPT, _E.FOLLOW_UP_BAD: KEPT,
        _E.NOT_ASKED: REFUSED,
    },
    _S.UNRESOLVED: {
        _E.CONTACTED: _S.CONTACTED, _E.RESOLVED: _S.RESOLVED, _E.RATED_AGAIN: KEPT,
        _E.SECOND_ROUND_GOOD: _S.RECOVERED, _E.SECOND_ROUND_POOR: KEPT,
        _E.NO_ANSWER: REFUSED, _E.ESCALATED: KEPT,
        _E.FOLLOW_UP_GOOD: _S.RECOVERED, _E.FOLLOW_UP_NEUTRAL: KEPT, _E.FOLLOW_UP_BAD: KEPT,
        _E.NOT_ASKED: REFUSED,
    },
}  # fmt: skip


def decide(state: str, event: str, at: datetime, closed_at: datetime | None) -> Outcome:
    """What ``event`` at ``at`` does to a case in ``state`` (closed at ``closed_at``).

    A move from a closed state back to the to-do list needs an event newer than the closing:
    the customer's "2" given before the manager resolved was about the old state of things,
    and is kept (a rating and a resolution made in that order may reach the warehouse in
    either order). DECIDE_SQL says the same in SQL."""
    result = TABLE[State(state)][Event(event)]
    reopens = state in CLOSED and result in ACTIVE
    return KEPT if reopens and closed_at is not None and at < closed_at else result


def states_where(event: Event) -> list[str]:
    """The states in which ``event`` is taken (moves or is kept); a system writer emits it
    only for cases in these."""
    return [s.value for s, row in TABLE.items() if row[event] != REFUSED]


def manager_moves() -> dict[str, list[str]]:
    """Each change a manager may make, and the states it may be made from (the page's buttons)."""
    return {e.value: states_where(e) for e in MANAGER_EVENTS}


# --- the case in the warehouse ------------------------------------------------------------

# Events to apply: one row each, in any order; a key already in case_events is skipped (a
# replay). store_id, when given, must be the case's (a manager's change names its store).
EVENT_SCHEMA = pl.Schema(
    {
        "event_key": pl.String(),
        "case_id": pl.String(),
        "store_id": pl.String(),
        "event": pl.String(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "actor": pl.String(),
        "note": pl.String(),
        "score": pl.Int32(),
        "comment": pl.String(),
    }
)


def _transitions_sql() -> str:
    rows = ", ".join(
        f"('{state}', '{event}', '{result}')"
        for state, row in TABLE.items()
        for event, result in row.items()
    )
    return f"(VALUES {rows}) AS t(from_status, event, outcome)"


def _in(values: tuple[State, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Each event of this step against its case's state: the table's outcome, kept instead when it
# would reopen a case it came before the closing of (decide).
DECIDE_SQL = f"""
CREATE OR REPLACE TEMP TABLE case_decisions AS
SELECT i.*, m.status AS from_status,
    CASE WHEN m.status IN {_in(CLOSED)} AND t.outcome IN {_in(ACTIVE)}
              AND i.occurred_at < m.closed_at THEN '{KEPT}'
         ELSE t.outcome END AS outcome
FROM case_inputs i
JOIN manager_cases m ON m.evaluation_id = i.case_id
JOIN {_transitions_sql()} ON t.from_status = m.status AND t.event = i.event
WHERE i.step = $step
"""

RECORD_SQL = f"""
INSERT INTO case_events (event_key, evaluation_id, occurred_at, actor, from_status, to_status,
    note, accepted)
SELECT event_key, case_id, occurred_at, actor, from_status,
    CASE outcome WHEN '{KEPT}' THEN from_status WHEN '{REFUSED}' THEN event ELSE outcome END,
    note, outcome <> '{REFUSED}'
FROM case_decisions ON CONFLICT DO NOTHING
"""

# What an event does to the case's other columns: a move stamps the case (contacted_at once,
# closed_at on closing, cleared on reopening); escalation marks it; the second round's rating
# is kept as such; another first-round reply is what the case now says.
UPDATE_SQL = f"""
UPDATE manager_cases m SET
    status = CASE WHEN d.outcome IN ('{KEPT}', '{REFUSED}') THEN m.status ELSE d.outcome END,
    updated_at = greatest(m.updated_at, d.occurred_at),
    contacted_at = CASE WHEN d.outcome IN {_in(MET)} THEN coalesce(m.contacted_at, d.occurred_at)
                        ELSE m.contacted_at END,
    closed_at = CASE WHEN d.outcome IN {_in(CLOSED)} THEN d.occurred_at
                     WHEN d.outcome IN {_in(ACTIVE)} THEN NULL ELSE m.closed_at END,
    escalated_at = CASE WHEN d.event = '{Event.ESCALATED}'
                        THEN coalesce(m.escalated_at, d.occurred_at) ELSE m.escalated_at END,
    recovered_score = CASE WHEN d.event IN ('{Event.SECOND_ROUND_GOOD}',
                                            '{Event.SECOND_ROUND_POOR}')
                           THEN d.score ELSE m.recovered_score END,
    score = CASE WHEN d.event = '{Event.RATED_AGAIN}' THEN d.score ELSE m.score END,
    comment = CASE WHEN d.event = '{Event.RATED_AGAIN}' THEN coalesce(d.comment, m.comment)
                   ELSE m.comment END
FROM case_decisions d
WHERE m.evaluation_id = d.case_id AND d.outcome <> '{REFUSED}'
"""


def apply_events(con: duckdb.DuckDBPyConnection, events_sql: str, params: object = None) -> int:
    """Apply the events ``events_sql`` selects (the columns of ``EVENT_SCHEMA``), each case's
    in the order they occurred, every case at once: each event is recorded in case_events
    (moved, kept or refused) and its case updated. Returns the events taken (not refused)."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE case_inputs AS
        SELECT e.*, row_number() OVER (PARTITION BY e.case_id
                                       ORDER BY e.occurred_at, e.event_key) AS step
        FROM ({events_sql}) e
        JOIN manager_cases m ON m.evaluation_id = e.case_id
            AND (e.store_id IS NULL OR e.store_id = m.store_id)
        WHERE NOT EXISTS (SELECT 1 FROM case_events c WHERE c.event_key = e.event_key)""",
        params,
    )
    [(steps,)] = con.execute("SELECT coalesce(max(step), 0) FROM case_inputs").fetchall()
    taken = 0
    for step in range(1, steps + 1):
        con.execute(DECIDE_SQL, {"step": step})
        con.execute(RECORD_SQL)
        con.execute(UPDATE_SQL)
        [(n,)] = con.execute(
            f"SELECT count(*) FROM case_decisions WHERE outcome <> '{REFUSED}'"
        ).fetchall()
        taken += n
    if steps:
        _drop_second_rounds_of_closed(con)
    # what the board shows of these cases changed (a refused change is shown too)
    con.execute(
        "UPDATE manager_cases SET board_stale = true WHERE board_stale IS NOT true "
        "AND evaluation_id IN (SELECT case_id FROM case_inputs)"
    )
    return taken


CLOSED_CASE = "case_closed"  # a second round's suppression reason


def _drop_second_rounds_of_closed(con: duckdb.DuckDBPyConnection) -> None:
    """The second rounds still queued of the cases these events closed are not sent: resolved
    by the manager, the customer gets the follow-up asking if it is sorted, not also the
    second round's apology and survey, whose answer then went to the wrong survey (a "2" to
    it is kept on a resolved case, where the follow-up's reopens it). One already claimed for
    sending is left to its send, but expires at the closing: if it comes back to the queue
    (a retry, or reconcile finding it never went), the send screen expires it."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE closed_second_rounds AS
        SELECT second_round_action_id AS action_id, closed_at FROM manager_cases
        WHERE evaluation_id IN (SELECT case_id FROM case_inputs)
          AND status IN {_in(CLOSED)} AND second_round_action_id IS NOT NULL""")
    dropped = con.execute(f"""
        UPDATE care_actions a SET status = 'suppressed', suppression_reason = '{CLOSED_CASE}',
            updated_at = c.closed_at
        FROM closed_second_rounds c
        WHERE {looked_up("action_id", "a.status = 'queued'", by="c")}
        RETURNING a.action_id""").fetchall()
    con.execute(f"""
        UPDATE care_actions a
        SET expires_at = least(coalesce(a.expires_at, c.closed_at), c.closed_at)
        FROM closed_second_rounds c
        WHERE {looked_up("action_id", "a.status IN ('sending', 'unconfirmed')", by="c")}""")
    if dropped:  # the case had no second round: its recovery is due from its opening (not
        # never, as a second round never sent made it), and its page names no care given
        con.execute(
            "UPDATE manager_cases SET second_round_action_id = NULL "
            "WHERE list_contains($dropped, second_round_action_id)",
            {"dropped": [action_id for (action_id,) in dropped]},
        )


def apply_rows(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> int:
    """Events from Python (managers' changes, escalations, follow-ups not asked), each a dict
    of ``EVENT_SCHEMA``'s keys (score and comment may be left out)."""
    if not rows:
        return 0
    frame = pl.DataFrame(
        [{"score": None, "comment": None, **row} for row in rows], schema=EVENT_SCHEMA
    )
    register_frame(con, "case_rows", frame)
    try:
        return apply_events(con, "SELECT * FROM case_rows")
    finally:
        con.unregister("case_rows")


# --- the case on the board (the service's copy, a JSON document per case) -----------------


def apply_on_board(case: dict[str, Any], event: str, at: str, actor: str, note: str | None) -> bool:
    """A manager's change on the board's copy of the case, by the same table: moves and stamps
    it as the warehouse will, and adds it to its history. False when the state refuses it (the
    page then shows the case as it is)."""
    closed_at = case.get("closed_at")
    result = decide(
        case["status"],
        event,
        datetime.fromisoformat(at),
        datetime.fromisoformat(str(closed_at)) if closed_at else None,
    )
    if result == REFUSED:
        return False
    before = case["status"]
    if isinstance(result, State):
        case["status"] = result.value
        if result in MET:
            case["contacted_at"] = case.get("contacted_at") or at
        if result in CLOSED:
            case["closed_at"] = at
        elif result in ACTIVE:
            case["closed_at"] = None
    to = case["status"]
    entry = {"at": at, "actor": actor, "from": before, "to": to, "note": note, "accepted": True}
    case["events"] = [*(case.get("events") or []), entry]
    return True


def markdown_table() -> str:
    """The table as the README shows it: events down, states across; a state in bold is a
    move, "kept" is recorded with the state standing, "refused" is recorded as refused."""
    states = list(State)
    lines = [
        "| event | " + " | ".join(f"`{s}`" for s in states) + " |",
        "|---" * (len(states) + 1) + "|",
    ]
    for event in Event:
        cells = [_cell(TABLE[s][event], s, event) for s in states]
        lines.append(f"| `{event}`: {MEANS[event]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(result: Outcome, state: State, event: Event) -> str:
    if not isinstance(result, State):
        return str(result)
    late = state in CLOSED and result in ACTIVE
    return f"**{result}**" + (" (if given after the resolution, else kept)" if late else "")
