"""A small world of cases on two stores' boards, for the managers' page tests."""

from datetime import UTC, datetime, timedelta

from cases.board import Board
from cases.publishing import publish_boards
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber
from warehouse.ratings import rebuild_ratings

OPENED = datetime.now(UTC) - timedelta(hours=5)


def add_case(con, case_id, store_id, subscriber_id, comment="排队太久了", status="open"):
    con.execute(
        "INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, "
        "action_id, score, comment, opened_at, status) "
        "VALUES (?, ?, ?, 'store_visit', ?, 1, ?, ?, ?)",
        [case_id, store_id, subscriber_id, f"A-{case_id}", comment, OPENED, status],
    )
    con.execute(  # the rating the case came from, by SMS
        "INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, "
        "campaign_id, round, store_id, channel, intent, score, comment, attribution, "
        "received_at) VALUES (?, ?, ?, ?, 'store_visit', 1, ?, 'sms', 'rating', 1, ?, "
        "'matched', ?)",
        [case_id, f"k-{case_id}", f"A-{case_id}", subscriber_id, store_id, comment, OPENED],
    )
    rebuild_ratings(con)  # written as collect would have


def build(con, settings):
    """ST1 (Shanghai, zh-CN) has cases E1, E2 and a recovered E3; ST2 (New York) has E9."""
    add_store(con)
    add_store(con, store_id="ST2", name="New York #2", timezone="America/New_York")
    for n, store in ((1, "ST1"), (2, "ST1"), (3, "ST1"), (9, "ST2")):
        add_subscriber(con, f"S{n}", home_store_id=store)
        add_action(
            con, f"A-E{n}", f"S{n}", recipient=f"+86138{n:08d}", sent_at=OPENED, store_id=store
        )
    add_case(con, "E1", "ST1", "S1")
    add_case(con, "E2", "ST1", "S2", comment="店员态度很差")
    add_case(con, "E3", "ST1", "S3", status="recovered")
    add_case(con, "E9", "ST2", "S9", comment="staff was rude")
    board = Board(Inbox(settings.inbox_path))
    publish_boards(con, board, datetime.now(UTC), settings.case_sla_hours, 0)
    return board
