"""The case lifecycle: every (state, event) pair through the writer that makes that event in
production (collect with a manager's change or a customer's rating from the inbox, collect
past the reply window, escalation, the follow-up planner), against the table the README
gives; what comes late is kept and never undoes a manager's resolution."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.channels.mail import SandboxMailer
from cases.collect import collect
from cases.escalation import escalate_overdue
from cases.follow_up import plan_follow_ups
from cases.publishing import board_rows
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber
from tests.manager_world import add_case
from warehouse.ratings import rebuild_ratings

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # the complaint
SECOND_SENT = T0 + timedelta(hours=1)
FOLLOW_UP_SENT = T0 + timedelta(hours=2)  # asked after an earlier resolution
CLOSED = T0 + timedelta(hours=3)  # when a resolved or recovered case closed
EVENT_AT = T0 + timedelta(hours=4)  # the event under test: after all of the above
WINDOW = timedelta(hours=72)

# The README's table (the case lifecycle), written out again here on purpose: a new state
# in cases.machine, or a changed cell, must be a decision made twice.
STATES = ("open", "contacted", "resolved", "recovered", "unresolved")
K, R = "kept", "refused"
EXPECTED = {
    #               open         contacted    resolved     recovered    unresolved
    "contacted":   ("contacted", R,           R,           R,           "contacted"),
    "resolved":    ("resolved",  "resolved",  R,           R,           "resolved"),
    "rated_again": (K,           K,           K,           K,           K),
    "second_round_good": ("recovered", "recovered", "recovered", K,     "recovered"),
    "second_round_poor": ("unresolved", K,    K,           K,           K),
    "no_answer":   ("unresolved", K,          R,           R,           R),
    "escalated":   (K,           R,           R,           R,           K),
    "follow_up_good": ("recovered", "recovered", "recovered", K,        "recovered"),
    "follow_up_neutral": (K,     K,           K,           K,           K),
    "follow_up_bad": (K,         K,           "open",      K,           K),
    "not_asked":   (R,           R,           K,           R,           R),
}  # fmt: skip
MANAGER = {"contacted", "resolved"}
PAIRS = [(s, e, EXPECTED[e][i]) for e in EXPECTED for i, s in enumerate(STATES)]


def one_case(con, settings, state):
    """Case E1 of S1 at ST1 in ``state``: its survey A1, second round R2 and an earlier
    follow-up F3, all sent by email; stamped as a case in that state would be."""
    add_store(con)
    con.execute("INSERT INTO regions VALUES ('East China', '陈经理', 'east@example.com')")
    add_subscriber(con, "S1")
    for action, round_, sent in (
        ("A-E1", 1, T0),
        ("R2", 2, SECOND_SENT),
        ("F3", 3, FOLLOW_UP_SENT),
    ):
        add_action(con, action, "S1", channel="email", recipient="c1@example.com",
                   sent_at=sent - timedelta(minutes=30), round=round_)  # fmt: skip
    con.execute("UPDATE care_actions SET parent_evaluation_id = 'E1' WHERE round > 1")
    con.execute("UPDATE care_actions SET created_at = sent_at")
    add_case(con, "E1", "ST1", "S1", status=state)
    con.execute(
        "UPDATE manager_cases SET opened_at = ?, second_round_action_id = 'R2', "
        "contacted_at = CASE WHEN status IN ('contacted', 'resolved') THEN ? END, "
        "closed_at = CASE WHEN status IN ('resolved', 'recovered') THEN ? END",
        [T0, T0 + timedelta(minutes=30), CLOSED],
    )
    con.execute("UPDATE evaluations SET received_at = ?", [T0])
    rebuild_ratings(con)  # the latest ratings as collect would have kept them
    if state in ("recovered", "unresolved"):  # the second round was answered
        rate(settings, "R2", 5 if state == "recovered" else 2, SECOND_SENT)
        collect(con, Inbox(settings.inbox_path), reply_window=WINDOW)
    return Inbox(settings.inbox_path)


def rate(settings, action, score, at, comment=None):
    """A rating as the email rating page lands it (it names its action)."""
    Inbox(settings.inbox_path).put(
        "email_rating", f"{action}:{score}:{at.isoformat()}", at,
        {"action_id": action, "score": score, "comment": comment, "attributes": {}},
    )  # fmt: skip


def manager(inbox, action, at, note="done"):
    """A manager's change as the page lands it (cases.board.Board.record_change)."""
    change = {"case_id": "E1", "store_id": "ST1", "action": action, "note": note,
              "at": at.isoformat()}  # fmt: skip
    inbox.put("case_event", f"E1:{action}:{at.isoformat()}", at, change)


def happen(con, settings, inbox, event):
    """``event`` to case E1, made by its production writer."""
    ratings = {
        "rated_again": ("A-E1", 1), "second_round_good": ("R2", 4),
        "second_round_poor": ("R2", 3), "follow_up_good": ("F3", 5),
        "follow_up_neutral": ("F3", 3), "follow_up_bad": ("F3", 1),
    }  # fmt: skip
    if event in MANAGER:
        manager(inbox, event, EVENT_AT)
        collect(con, inbox, reply_window=WINDOW)
    elif event in ratings:
        action, score = ratings[event]
        rate(settings, action, score, EVENT_AT, comment="news")
        collect(con, inbox, reply_window=WINDOW)
    elif event == "no_answer":
        collect(con, inbox, reply_window=WINDOW, now=SECOND_SENT + WINDOW + timedelta(hours=1))
    elif event == "escalated":
        escalate_overdue(con, SandboxMailer(settings.sandbox_path), T0 + timedelta(hours=49), 48)
    elif event == "not_asked":
        con.execute(
            "INSERT INTO opt_outs VALUES ('S1', 'sms', 'opt_out', ?, 'sms_reply', 'o')", [T0]
        )
        plan_follow_ups(con, settings, EVENT_AT)
    else:
        raise AssertionError(event)


def status(con):
    return con.execute("SELECT status FROM manager_cases WHERE evaluation_id = 'E1'").fetchone()[0]


def events_after(con, before):
    return con.execute(
        "SELECT from_status, to_status, accepted FROM case_events WHERE event_key NOT IN "
        f"(SELECT unnest(${'keys'}::VARCHAR[])) ORDER BY occurred_at",
        {"keys": before},
    ).fetchall()


@pytest.mark.parametrize(("state", "event", "expected"), PAIRS)
def test_every_event_in_every_state(con, settings, state, event, expected):
    inbox = one_case(con, settings, state)
    assert status(con) == state
    before = [k for (k,) in con.execute("SELECT event_key FROM case_events").fetchall()]
    happen(con, settings, inbox, event)
    recorded = events_after(con, before)
    if expected == K:
        assert status(con) == state and recorded == [(state, state, True)]
    elif expected == R and event in MANAGER:  # the manager's note is kept, marked refused
        assert status(con) == state and recorded == [(state, event, False)]
    elif expected == R:  # a system writer does not make it at all
        assert status(con) == state and recorded == []
    else:
        assert status(con) == expected and recorded == [(state, expected, True)]


def test_a_late_second_round_2_leaves_the_resolution_and_the_follow_ups_5_recovers(con, settings):
    inbox = one_case(con, settings, "open")
    manager(inbox, "resolved", T0 + timedelta(hours=2), note="refunded")
    collect(con, inbox, reply_window=WINDOW)
    assert plan_follow_ups(con, settings, T0 + timedelta(hours=2)) == 1
    rate(settings, "R2", 2, T0 + timedelta(hours=3), comment="still slow")  # late
    collect(con, inbox, reply_window=WINDOW)
    row = con.execute("SELECT status, closed_at FROM manager_cases").fetchone()
    assert row == ("resolved", T0 + timedelta(hours=2))  # the resolution stands
    late = con.execute("SELECT note FROM case_events WHERE actor = 'customer'").fetchall()
    assert late == [("second round rated 2/5: still slow",)]  # and its history says so
    (follow_up,) = con.execute(
        "SELECT action_id FROM care_actions WHERE round = 3 AND created_at >= ?",
        [T0 + timedelta(hours=2)],
    ).fetchone()
    con.execute("UPDATE care_actions SET status = 'sent', sent_at = created_at")
    rate(settings, follow_up, 5, T0 + timedelta(hours=5))
    collect(con, inbox, reply_window=WINDOW)
    assert status(con) == "recovered"


def test_a_follow_up_2_given_before_the_resolution_does_not_reopen_it(con, settings):
    """The customer's "2" to an earlier follow-up, given before the manager resolved the
    case again, reaches the warehouse after the resolution: it is kept, the case stays
    resolved. The same "2" given after the resolution reopens it."""
    inbox = one_case(con, settings, "open")
    rate(settings, "F3", 2, T0 + timedelta(hours=3))  # before the resolution below
    manager(inbox, "resolved", T0 + timedelta(hours=4))
    collect(con, inbox, reply_window=WINDOW)  # applies the change, then the ratings
    assert status(con) == "resolved"
    rate(settings, "F3", 1, T0 + timedelta(hours=5))  # after it
    collect(con, inbox, reply_window=WINDOW)
    assert status(con) == "open"


def test_the_readme_shows_the_table_the_machine_runs():
    from pathlib import Path

    from cases.machine import TABLE, markdown_table

    assert markdown_table() in (Path(__file__).parents[1] / "README.md").read_text()
    assert tuple(TABLE) == STATES and {e for e in TABLE["open"]} == set(EXPECTED)
    assert {e: tuple(str(TABLE[s][e]) for s in STATES) for e in EXPECTED} == EXPECTED


def test_a_history_reads_in_the_order_its_events_were_applied(con, settings):
    """The manager's call (collected first) and the customer's earlier second-round 5
    (collected after it): by occurrence the history read "recovered, then open -> contacted";
    in the order applied, each step starts where the one before it ended."""
    inbox = one_case(con, settings, "open")
    manager(inbox, "contacted", EVENT_AT)
    collect(con, inbox, reply_window=WINDOW)
    rate(settings, "R2", 5, EVENT_AT - timedelta(hours=2), comment="sorted")
    collect(con, inbox, reply_window=WINDOW)
    _, cases = board_rows(con, EVENT_AT + timedelta(hours=1), 48, 7)
    [case] = [c for c in cases if c["case_id"] == "E1"]
    moves = [(e["from"], e["to"]) for e in case["events"] if e["accepted"]]
    assert moves == [("open", "contacted"), ("contacted", "recovered")]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(moves))


def test_a_second_round_unanswered_does_not_move_a_case_reopened_by_its_follow_up(con, settings):
    """The second round went unanswered, the manager resolved the case, the follow-up was
    rated 1 and reopened it; when the second round's window closed after that, its "no
    answer" (dated at the window's close, before the reopening) moved the reopened case to
    unresolved: "still unhappy after the second round", which the customer never answered.
    The follow-up is the newer word."""
    inbox = one_case(con, settings, "open")
    manager(inbox, "resolved", T0 + timedelta(hours=2))
    collect(con, inbox, reply_window=WINDOW)
    assert plan_follow_ups(con, settings, T0 + timedelta(hours=2)) == 1
    con.execute("UPDATE care_actions SET status = 'sent', sent_at = created_at WHERE round = 3")
    (follow_up,) = con.execute(
        "SELECT action_id FROM care_actions WHERE round = 3 AND created_at >= ?",
        [T0 + timedelta(hours=2)],
    ).fetchone()
    rate(settings, follow_up, 1, T0 + timedelta(hours=5))
    collect(con, inbox, reply_window=WINDOW)
    assert status(con) == "open"
    collect(con, inbox, reply_window=WINDOW, now=SECOND_SENT + WINDOW + timedelta(hours=1))
    assert status(con) == "open"
    notes = con.execute("SELECT note FROM case_events ORDER BY occurred_at").fetchall()
    assert ("no answer to the second round",) not in notes


def test_a_case_whose_second_round_was_dropped_is_due_for_recovery_from_its_opening(con, settings):
    """Resolved while its second round was queued, the case's second round was not sent, and a
    second round never sent kept the case out of recovery's denominator for good: only the
    cases whose follow-up said 4-5 counted, and the rate read high."""
    from insights.report import loop_report

    inbox = one_case(con, settings, "open")
    con.execute("UPDATE care_actions SET status = 'queued', sent_at = NULL WHERE action_id = 'R2'")
    manager(inbox, "resolved", T0 + timedelta(hours=2))
    collect(con, inbox, reply_window=WINDOW, now=T0 + timedelta(hours=2, minutes=5))
    later = T0 + timedelta(days=30)
    collect(con, inbox, reply_window=WINDOW, now=later)
    report = loop_report(con, "Asia/Shanghai", now=later, reply_window_hours=72)
    [campaign] = [c for c in report.campaigns if c["cases"]]
    assert (campaign["second_round_sent"], campaign["recovered"]) == (0, 0)
    assert campaign["recovery_due"] == 1  # no answer to its follow-up: due, not recovered


@pytest.mark.parametrize("ended", ["suppressed", "expired", "failed", "undelivered", "bounced"])
def test_a_case_whose_second_round_never_went_is_due_for_recovery_from_its_opening(
    con, settings, ended
):
    """Suppressed at send (the customer opted out), expired or failed, a second round never
    sent kept its case out of recovery's denominator for good."""
    from insights.report import loop_report

    inbox = one_case(con, settings, "open")
    con.execute(
        "UPDATE care_actions SET status = ?, sent_at = NULL WHERE action_id = 'R2'", [ended]
    )
    later = T0 + timedelta(days=30)
    collect(con, inbox, reply_window=WINDOW, now=later)
    report = loop_report(con, "Asia/Shanghai", now=later, reply_window_hours=72)
    [campaign] = [c for c in report.campaigns if c["cases"]]
    assert (campaign["second_round_sent"], campaign["recovery_due"]) == (0, 1)
