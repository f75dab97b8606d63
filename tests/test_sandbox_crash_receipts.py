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
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None, voice_consent=False)
    plan(con, settings)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    real = dispatch_module._write_outcome
    monkeypatch.setattr(
        dispatch_module, "_write_outcome", lambda *a, **k: (_ for _ in ()).throw(Crash())
    )
    with pytest.raises(Crash):
        dispatch(con, sandbox, now=NOW)
    monkeypatch.setattr(dispatch_module, "_write_outcome", real)
    dispatch(con, sandbox, now=NOW + timedelta(hours=3))
    [logged] = sandbox.sent_after(0)
    [(sent_at,)] = con.execute("SELECT sent_at FROM care_actions").fetchall()
    assert sent_at == logged.sent_at
