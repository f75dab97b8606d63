"""The sandbox's unclaimed send path (``Batch.send_in_transaction``) across a crash between
the sandbox taking a batch and the warehouse recording it."""

from datetime import timedelta

import pytest

import campaigns.dispatch as dispatch_module
from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from cases.collect import NewsWatch, collect
from inbox.inbox import Inbox
from tests.factories import add_store, add_subscriber
from tests.test_live_providers import NOW
from tests.test_planning import plan

WINDOW = timedelta(hours=72)


class Crash(BaseException):
    """A process killed after the sandbox committed its log and the inbox its receipts, and
    before the warehouse committed the batch: the transaction rolls back, as on SIGKILL."""


def killed_before_the_record(con, settings, monkeypatch, customers):
    """Customers planned and a dispatch killed after the sandbox took their batch (its log
    and its receipts) and before the warehouse recorded it: (inbox, sandbox)."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    for k in range(1, customers + 1):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    real = dispatch_module._write_outcome
    monkeypatch.setattr(
        dispatch_module, "_write_outcome", lambda *a, **k: (_ for _ in ()).throw(Crash())
    )
    with pytest.raises(Crash):
        dispatch(con, sandbox, now=NOW)
    monkeypatch.setattr(dispatch_module, "_write_outcome", real)
    return inbox, sandbox


def test_a_receipt_collected_between_a_crash_and_the_resume_is_not_lost(con, settings, monkeypatch):
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    for k in (1, 2, 3):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    real = dispatch_module._write_outcome

    def crash(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(dispatch_module, "_write_outcome", crash)
    with pytest.raises(Crash):
        dispatch(con, sandbox, now=NOW, refresh=NewsWatch(lambda: con, inbox, WINDOW))
    assert con.execute("SELECT DISTINCT status FROM care_actions").fetchall() == [("queued",)]
    # the scheduled collect runs before the operator resumes dispatch: it takes the receipts
    # the sandbox wrote for sends the warehouse does not know yet
    collect(con, inbox, reply_window=WINDOW, now=NOW + timedelta(minutes=1))
    monkeypatch.setattr(dispatch_module, "_write_outcome", real)
    later = NOW + timedelta(minutes=2)
    dispatch(con, sandbox, now=later, refresh=NewsWatch(lambda: con, inbox, WINDOW))
    collect(con, inbox, reply_window=WINDOW, now=later + timedelta(minutes=1))
    assert len(sandbox.sent_after(0)) == 3  # one message each, whatever was sent again
    # each message was delivered (the sandbox said so); the outbox should say it too
    statuses = con.execute("SELECT status, count(*) FROM care_actions GROUP BY 1").fetchall()
    assert statuses == [("delivered", 3)]


def test_a_resent_batch_records_the_time_the_sandbox_took_it(con, settings, monkeypatch):
    """After the crash the sandbox's log keeps the first send (INSERT OR IGNORE): the
    outbox's sent_at (what reply attribution, the send hour and the reports read) should be
    that send's, not the resume's."""
    _, sandbox = killed_before_the_record(con, settings, monkeypatch, customers=1)
    dispatch(con, sandbox, now=NOW + timedelta(hours=3))
    [logged] = sandbox.sent_after(0)
    [(sent_at,)] = con.execute("SELECT sent_at FROM care_actions").fetchall()
    assert sent_at == logged.sent_at


def test_a_crash_between_the_sandbox_log_and_its_receipts_loses_no_send(con, settings, monkeypatch):
    """Killed after the sandbox committed its log and before the receipts reached the inbox,
    the sends were delivered but the outbox kept them queued with no receipt on the way: the
    customer's STOP then made one 'suppressed', never sent, and their rating found no open
    survey (no case). The receipts are put at the provider's next start (a collect's or a
    dispatch's), as a provider retries its callbacks; the sends are recorded before the
    screen and the replies that answer them."""
    from campaigns.channels.factory import deliver_pending_receipts

    inbox = Inbox(settings.inbox_path)
    add_store(con)
    for k in (1, 2):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    monkeypatch.setattr(Inbox, "put_many", lambda self, items: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        dispatch(con, sandbox, now=NOW)
    monkeypatch.undo()
    assert con.execute("SELECT DISTINCT status FROM care_actions").fetchall() == [("queued",)]
    [one, two] = sandbox.sent_after(0)
    # both customers got their message: one answers it, the other asks us to stop
    phone = dict(con.execute("SELECT action_id, recipient FROM care_actions").fetchall())
    later = NOW + timedelta(minutes=5)
    for n, (message, body) in enumerate(((one, "1 排队太久了"), (two, "STOP"))):
        sender = phone[message.action_id]
        inbox.put("sms", f"SM-r{n}", later, {"MessageSid": f"SM-r{n}", "From": sender,
                                              "To": "+10000000000", "Body": body})  # fmt: skip
    assert deliver_pending_receipts(settings) == 2  # the scheduled collect's first step
    assert deliver_pending_receipts(settings) == 0  # once
    collect(con, inbox, reply_window=WINDOW, now=later + timedelta(minutes=1))
    rows = con.execute("SELECT action_id, status, sent_at FROM care_actions").fetchall()
    receipt = timedelta(seconds=3)  # a send settled by its receipt is dated by it
    assert {a: (status, sent) for a, status, sent in rows} == {
        one.action_id: ("delivered", one.sent_at + receipt),
        two.action_id: ("delivered", two.sent_at + receipt),
    }
    [(action, score, attribution)] = con.execute(
        "SELECT action_id, score, attribution FROM evaluations WHERE intent = 'rating'"
    ).fetchall()
    assert (action, score, attribution) == (one.action_id, 1, "matched")
    # and a dispatch sends neither again
    dispatch(con, sandbox, now=later + timedelta(minutes=2))
    assert len(sandbox.sent_after(0)) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_a_dispatch_after_a_kill_collects_the_waiting_receipts_before_its_screen(
    con, settings, monkeypatch
):
    """Killed after the sandbox's receipts reached the inbox and before the warehouse recorded
    the sends, the next morning's dispatch expired the delivered sends as never made (its
    screen runs before any collect), and their replies found no survey: the run now collects
    what waits before it screens."""
    from flows.common import send_due

    inbox, _ = killed_before_the_record(con, settings, monkeypatch, customers=2)
    assert inbox.count() == 2  # the receipts are in; the outbox does not know the sends
    con.close()
    send_due(settings, NOW + timedelta(days=2), simulated=False)  # past every send window
    from warehouse.db import connect

    con = connect(settings.warehouse_path)
    got = con.execute("SELECT status, attempts FROM care_actions").fetchall()
    assert sorted(got) == [("delivered", 1), ("delivered", 1)]
