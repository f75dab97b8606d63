"""A publish sends the boards only what changed, and the boards end as a whole publish would
make them: after a manager's change, the case machine, a reload of a customer's details, a new
case and time passing. Its work is the changes', not the backlog's (counted in cases sent)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from cases.board import Board
from cases.collect import collect
from cases.machine import apply_rows
from cases.publishing import CLOSED_SHOWN_DAYS, SETTLING_DAYS, board_rows, publish_boards
from feedback.ingest import watermark
from tests.factories import add_action, add_subscriber
from tests.manager_world import OPENED, add_case, build
from warehouse.loading import load_file

SLA = 48
SUBSCRIBER_COLUMNS = (
    "subscriber_id, name, phone, email, birthday, joined_on, tier, home_store_id, timezone, "
    "locale, sms_consent, email_consent, voice_consent, left_on"
)


def on_board(board: Board) -> dict[str, dict]:
    with board.db.connection() as con:
        rows = con.execute("SELECT case_id, data FROM board_cases").fetchall()
    return {case_id: json.loads(data) for case_id, data in rows}


def as_whole(con, now) -> dict[str, dict]:
    """What a whole publish would show: every listed case, fresh from the warehouse."""
    _, cases = board_rows(con, now, SLA, CLOSED_SHOWN_DAYS)
    return {c["case_id"]: json.loads(json.dumps(c, ensure_ascii=False, default=str)) for c in cases}


def publish(con, board, now) -> int:
    return publish_boards(con, board, now, SLA, watermark(con, board.inbox))


def manager(board, case_id, store_id, action, at, key):
    change = {"case_id": case_id, "store_id": store_id, "action": action, "at": at.isoformat()}
    with board.db.connection() as db, board.db.transaction(db):
        return board.record_change(db, key, change)


def reload_phone(con, settings, tmp_path, subscriber_id, phone):
    path = tmp_path / f"subscribers-{phone}.csv"
    con.execute(
        f"COPY (SELECT * REPLACE ('{phone}' AS phone) FROM (SELECT {SUBSCRIBER_COLUMNS} "
        f"FROM subscribers WHERE subscriber_id = '{subscriber_id}')) TO '{path}' (HEADER)"
    )
    result = load_file(con, settings, "subscribers", path)
    assert (result.rows_loaded, result.bad_rows) == (1, {}), result


def event(con, case_id, name, at, actor):
    """An event through the case machine, as escalation or collect would apply it."""
    row = {"event_key": f"{actor}|{case_id}|{name}", "case_id": case_id, "store_id": None,
           "event": name, "occurred_at": at, "actor": actor, "note": None}  # fmt: skip
    assert apply_rows(con, [row]) == 1


@pytest.fixture
def world(con, settings):
    board = build(con, settings)  # published whole, now
    return board, datetime.now(UTC)


def test_each_change_reaches_the_board_as_a_whole_publish_would_show_it(
    con, settings, tmp_path, world
):
    board, now = world
    assert on_board(board) == as_whole(con, now)
    late = now + timedelta(days=SETTLING_DAYS + 1)  # no case is settling any more

    # a manager's change, collected
    assert manager(board, "E1", "ST1", "contacted", late, "E1:contacted")
    collect(con, board.inbox, reply_window=timedelta(hours=72), now=late)
    assert publish(con, board, late) == 1
    assert on_board(board) == as_whole(con, late)

    # the case machine (an escalation), and a customer's new phone number
    event(con, "E2", "escalated", late, "system")
    reload_phone(con, settings, tmp_path, "S9", "+12125550199")
    assert publish(con, board, late) == 2  # E2 and E9
    assert on_board(board)["E9"]["phone"] == "+12125550199"
    assert on_board(board) == as_whole(con, late)

    # a new case, and the recovered one ages off
    add_subscriber(con, "S4", home_store_id="ST2")
    add_case(con, "E4", "ST2", "S4", comment="slow")
    gone = late + timedelta(days=CLOSED_SHOWN_DAYS)
    assert publish(con, board, gone) == 1
    assert "E3" not in on_board(board) and "E4" in on_board(board)
    assert on_board(board) == as_whole(con, gone)

    # nothing changed: nothing sent
    assert publish(con, board, gone) == 0
    assert on_board(board) == as_whole(con, gone)


def test_a_backlog_on_the_boards_is_not_sent_again(con, settings, world):
    board, now = world
    late = now + timedelta(days=SETTLING_DAYS + 1)  # the world's four cases have settled
    for n in range(200):
        add_subscriber(con, f"B{n}", home_store_id="ST1")
        add_case(con, f"OLD{n}", "ST1", f"B{n}", comment="old")
    con.execute(
        "UPDATE manager_cases SET opened_at = opened_at - INTERVAL 20 DAY "
        "WHERE evaluation_id LIKE 'OLD%'"
    )
    assert publish(con, board, late) == 200  # new to the board
    event(con, "OLD7", "contacted", late, "manager:ST1")
    assert publish(con, board, late) == 1
    assert on_board(board) == as_whole(con, late)


def test_a_settling_case_is_sent_when_its_second_round_moves_on(con, settings, world):
    """Its second round's news (sent, delivered) changes no case row: the publish sees it in
    the outbox, for SETTLING_DAYS after the case opened."""
    board, now = world
    add_action(con, "R2", "S1", round=2, status="queued", sent_at=OPENED + timedelta(minutes=9))
    con.execute("UPDATE manager_cases SET second_round_action_id = 'R2' WHERE evaluation_id = 'E1'")
    assert publish(con, board, now) == 1  # queued, where the board showed none
    assert publish(con, board, now) == 0
    con.execute("UPDATE care_actions SET status = 'sent' WHERE action_id = 'R2'")  # dispatch
    assert publish(con, board, now) == 1
    assert on_board(board)["E1"]["second_round_status"] == "sent"
    assert on_board(board) == as_whole(con, now)
    con.execute("UPDATE care_actions SET status = 'delivered' WHERE action_id = 'R2'")
    assert publish(con, board, OPENED + timedelta(days=SETTLING_DAYS, hours=1)) == 0  # settled


def test_a_managers_change_not_yet_collected_shows_once_whether_its_case_is_sent_or_not(
    con, settings, world
):
    board, now = world
    late = now + timedelta(days=SETTLING_DAYS + 1)
    assert manager(board, "E1", "ST1", "contacted", late, "E1:c")
    assert manager(board, "E2", "ST1", "contacted", late, "E2:c")
    event(con, "E2", "escalated", late, "system")
    assert publish(con, board, late) == 1  # E2, from the warehouse, with the change replayed
    shown = on_board(board)
    assert [e["to"] for e in shown["E1"]["events"]] == ["contacted"]
    assert [e["to"] for e in shown["E2"]["events"]] == ["open", "contacted"]
    assert shown["E1"]["status"] == shown["E2"]["status"] == "contacted"


def test_another_sla_replaces_every_board(con, settings, world):
    board, now = world
    late = now + timedelta(days=SETTLING_DAYS + 1)
    assert publish(con, board, late) == 0
    assert publish_boards(con, board, late, SLA + 24, watermark(con, board.inbox)) == 4
    sla_due = {c["case_id"]: c["sla_due"] for c in on_board(board).values()}
    assert sla_due["E1"] == str(OPENED + timedelta(hours=SLA + 24))


def test_a_late_collected_cases_second_round_news_reaches_the_board(con, settings, world):
    """A rating collected days late opens a case dated by the rating; its second round is made
    and sent from then on, and the board shows it sent as a whole publish would."""
    board, now = world
    rated = now - timedelta(days=SETTLING_DAYS + 3)  # the rating came; collect was down
    add_subscriber(con, "S5", home_store_id="ST1")
    add_case(con, "E5", "ST1", "S5", comment="late")
    con.execute("UPDATE manager_cases SET opened_at = ? WHERE evaluation_id = 'E5'", [rated])
    add_action(con, "R5", "S5", sent_at=now, round=2)  # the second round, made now
    con.execute("UPDATE care_actions SET status = 'queued', sent_at = NULL WHERE action_id = 'R5'")
    con.execute("UPDATE manager_cases SET second_round_action_id = 'R5' WHERE evaluation_id = 'E5'")
    publish(con, board, now)
    assert on_board(board)["E5"]["second_round_status"] == "queued"

    later = now + timedelta(hours=1)  # dispatch sends it
    con.execute(
        "UPDATE care_actions SET status = 'sent', sent_at = ? WHERE action_id = 'R5'", [later]
    )
    publish(con, board, later)
    assert on_board(board)["E5"]["second_round_status"] == "sent"
    assert on_board(board) == as_whole(con, later)


def test_a_publish_looks_its_cases_up_not_the_outbox_or_the_backlog(con, settings, world):
    """A day's few changes over a backlog of listed cases (more than a join looks up by key)
    and a year's outbox: the publish reads the changed cases' actions and customers by key."""
    from tests.test_history_cost import HISTORY, Profiled, fill_outbox
    from warehouse.db import LOOKUP_KEYS

    board, now = world
    fill_outbox(con)
    backlog = LOOKUP_KEYS + 1_000
    con.execute(
        f"INSERT INTO subscribers SELECT s.* REPLACE ('B' || i AS subscriber_id) "
        f"FROM subscribers s, range({backlog}) t(i) WHERE s.subscriber_id = 'S1'"
    )
    con.execute(
        f"""INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id,
            action_id, score, comment, opened_at, status)
        SELECT 'OLD' || i, 'ST1', 'B' || i, 'store_visit', 'A-OLD' || i, 1, 'old', $at, 'open'
        FROM range({backlog}) t(i)""",
        {"at": now - timedelta(days=2)},
    )
    assert publish(con, board, now) == backlog  # new to the boards
    event(con, "OLD7", "contacted", now, "manager:ST1")
    profiled = Profiled(con, as_rows=True)
    assert publish(profiled, board, now) == 1
    assert profiled.read_from("care_actions", HISTORY // 10) == []
    assert profiled.read_from("subscribers", backlog // 2) == []
    assert on_board(board) == as_whole(con, now)
