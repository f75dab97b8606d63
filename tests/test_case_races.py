"""A manager's change on the page and a customer's rating by SMS, in every order, including
the manager's change landing while collect holds the rating's batch (two connections to the
inbox: the service's and collect's): the case ends the same. The board stamps a change as
the warehouse does, and a note on a change the warehouse refused stays in the history."""

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from campaigns.dispatch import dispatch
from cases.collect import collect
from cases.publishing import publish_boards
from core.settings import load_settings
from feedback.ingest import watermark
from inbox.inbox import Inbox
from service.app import create_app
from tests.factories import add_action
from tests.manager_world import OPENED, build
from tests.service_helpers import AUTH_TOKEN, PUBLIC_URL, sid, sms_form, twilio_post
from tests.test_dispatch import provider
from tests.test_manager_pages import sign_in

WINDOW = timedelta(hours=72)
PHONE = "+8613800000001"  # S1's, whose case is E1


@pytest.fixture
def page(con, settings, monkeypatch):
    """The service (webhooks and the managers' page) over a world whose case E1 had its
    second round R2 by SMS; signed in as ST1's manager: (client, board, csrf token)."""
    monkeypatch.setenv("CARELOOP_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    settings = load_settings()
    board = build(con, settings)
    add_action(con, "R2", "S1", round=2, recipient=PHONE, sent_at=OPENED + timedelta(minutes=30),
               sender="+15550001111")  # fmt: skip
    con.execute("UPDATE manager_cases SET second_round_action_id = 'R2' WHERE evaluation_id = 'E1'")
    with TestClient(create_app(settings), base_url=PUBLIC_URL) as client:
        sign_in(client, settings)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/m/").text).group(1)
        yield client, board, token


def change(client, token, action, note="called"):
    done = client.post("/m/cases/E1", data={"csrf": token, "action": action, "note": note},
                       follow_redirects=False)  # fmt: skip
    # 303 back to the board, or 409 when the case had moved on (the note is kept as refused)
    assert done.status_code in (303, 409)


def reply(client, body):
    form = sms_form(sid("SM", body), PHONE, body)
    assert client.post(
        "/webhooks/twilio/sms", **twilio_post("/webhooks/twilio/sms", form)
    ).is_success


def publish(con, board):
    publish_boards(con, board, datetime.now(UTC), 48, watermark(con, board.inbox))


class HeldInbox(Inbox):
    """The inbox as collect reads it, stopping after it has read its first batch until the
    test lets it go on: the manager's change lands meanwhile, past this drain's bound."""

    def __init__(self, location, read: threading.Event, go_on: threading.Event) -> None:
        super().__init__(location)
        self.read, self.go_on = read, go_on

    def after(self, last_id, limit=5000):
        for batch in super().after(last_id, limit):
            self.read.set()
            assert self.go_on.wait(60), "the manager's change never landed"
            yield batch


def manager_during_collect(con, settings, client, board, token, action, score):
    reply(client, str(score))
    read, go_on = threading.Event(), threading.Event()
    held = HeldInbox(settings.inbox_path, read, go_on)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            collect(con, held, reply_window=WINDOW)
        except BaseException as exc:  # told to the test below
            failed.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert read.wait(60), "collect never read the rating"
    change(client, token, action)  # the board still shows the case open: it takes it
    go_on.set()
    worker.join(60)
    assert not worker.is_alive() and not failed, failed
    collect(con, board.inbox, reply_window=WINDOW)


def manager_first(con, settings, client, board, token, action, score):
    change(client, token, action)
    reply(client, str(score))
    collect(con, board.inbox, reply_window=WINDOW)


def customer_first(con, settings, client, board, token, action, score):
    reply(client, str(score))
    collect(con, board.inbox, reply_window=WINDOW)
    publish(con, board)
    change(client, token, action)
    collect(con, board.inbox, reply_window=WINDOW)


ENDS = {("contacted", 5): "recovered", ("contacted", 2): "contacted",
        ("resolved", 5): "recovered", ("resolved", 2): "resolved"}  # fmt: skip


@pytest.mark.parametrize("order", [manager_during_collect, manager_first, customer_first])
@pytest.mark.parametrize(("action", "score"), list(ENDS))
def test_a_managers_change_and_a_customers_rating_end_the_same_in_any_order(
    con, settings, page, order, action, score
):
    client, board, token = page
    order(con, settings, client, board, token, action, score)
    publish(con, board)
    warehouse = con.execute("SELECT status FROM manager_cases WHERE evaluation_id = 'E1'")
    assert warehouse.fetchone()[0] == ENDS[action, score] == board.case("ST1", "E1")["status"]
    customer = con.execute("SELECT count(*) FROM case_events WHERE actor = 'customer'")
    assert customer.fetchone() == (1,)  # the rating is in the history, whatever it did


def test_the_board_stamps_contacted_and_closed_as_the_warehouse_does(page):
    client, board, token = page
    assert board.case("ST1", "E1")["contacted_at"] is None  # published from the warehouse
    change(client, token, "contacted")
    contacted = board.case("ST1", "E1")
    assert contacted["status"] == "contacted" and contacted["contacted_at"] is not None
    assert contacted["closed_at"] is None
    change(client, token, "resolved")
    resolved = board.case("ST1", "E1")
    assert resolved["closed_at"] is not None
    assert resolved["contacted_at"] == contacted["contacted_at"]  # the first contact stays


def test_a_note_on_a_change_the_warehouse_refused_stays_in_the_history(con, settings, page):
    client, board, token = page
    reply(client, "5")  # the customer is happy now; the board does not know yet
    collect(con, board.inbox, reply_window=WINDOW)
    change(client, token, "resolved", note="refunded the fee")  # the stale board takes it
    collect(con, board.inbox, reply_window=WINDOW)
    assert con.execute(
        "SELECT status FROM manager_cases WHERE evaluation_id = 'E1'"
    ).fetchone() == ("recovered",)
    publish(con, board)
    client.get("/m/?lang=en")
    detail = client.get("/m/cases/E1").text
    assert "Mark resolved · not applied (the case had moved on) · “refunded the fee”" in detail


@pytest.mark.parametrize(
    ("action", "second_round"), [("resolved", "suppressed"), ("contacted", "queued")]
)
def test_a_case_resolved_before_its_second_round_went_drops_it_for_the_follow_up(
    con, settings, page, action, second_round
):
    """Resolved while its second round waited for the send window, the customer got the
    second round's apology and survey and the follow-up in one batch, and a "2, still not
    sorted" went to the second round, where a resolved case keeps it: the case stayed closed.
    A case only contacted keeps its second round."""
    client, board, token = page
    con.execute("UPDATE care_actions SET status = 'queued', sent_at = NULL WHERE action_id = 'R2'")
    change(client, token, action)
    collect(con, board.inbox, reply_window=WINDOW)
    [(status, reason)] = con.execute(
        "SELECT status, suppression_reason FROM care_actions WHERE action_id = 'R2'"
    ).fetchall()
    assert (status, reason) == (
        second_round,
        "case_closed" if second_round == "suppressed" else None,
    )
    # a case whose second round never went has none: its recovery is due from its opening
    # (kpis.RECOVERY_DUE), where a second round never sent kept it from ever being due, and
    # its page and lists name no care given
    [(kept,)] = con.execute(
        "SELECT second_round_action_id FROM manager_cases WHERE evaluation_id = 'E1'"
    ).fetchall()
    assert kept == (None if second_round == "suppressed" else "R2")


def test_a_second_round_already_claimed_for_sending_is_left_to_its_send(con, settings, page):
    client, board, token = page
    con.execute("UPDATE care_actions SET status = 'sending', sent_at = NULL WHERE action_id = 'R2'")
    change(client, token, "resolved")
    collect(con, board.inbox, reply_window=WINDOW)
    assert con.execute("SELECT status FROM care_actions WHERE action_id = 'R2'").fetchone() == (
        "sending",
    )


def test_a_claimed_second_round_that_comes_back_to_the_queue_after_the_closing_is_not_sent(
    con, settings, page
):
    """Claimed, then the process died before the send; the manager resolved the case
    meanwhile. Reconcile finds the provider never had it and puts it back in the queue: the
    customer got the closed case's apology and survey beside its follow-up."""
    client, board, token = page
    con.execute(
        "UPDATE care_actions SET status = 'sending', sent_at = NULL, claimed_at = created_at "
        "WHERE action_id = 'R2'"
    )
    change(client, token, "resolved")
    collect(con, board.inbox, reply_window=WINDOW)
    sandbox = provider(settings)
    figures = dispatch(con, sandbox, now=datetime.now(UTC))
    assert figures.reconciled_requeued == 1  # the provider never had it
    assert "key-R2" not in sandbox.handed
    assert con.execute("SELECT status FROM care_actions WHERE action_id = 'R2'").fetchone() == (
        "expired",
    )
