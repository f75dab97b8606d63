"""The sandbox's unclaimed send path (``Batch.send_in_transaction``) across a crash between
the sandbox taking a batch and the warehouse recording it."""

from datetime import timedelta
from itertools import pairwise

import pytest

import campaigns.dispatch as dispatch_module
from campaigns.channels.base import OutboundMessage
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
    [(sent_at, provider_id)] = con.execute(
        "SELECT sent_at, provider_id FROM care_actions"
    ).fetchall()
    assert sent_at == logged.sent_at
    # the id it was given the first time, so its one receipt (keyed by that id) is its own
    assert provider_id == logged.provider_id
    assert inbox.count() == 1


def test_the_sandbox_issues_its_ids_in_the_order_it_takes_the_batches(settings):
    """A batch's receipts go into the inbox keyed by their provider id: ids in the order they
    were issued append to that key's index, where ids drawn at random cost it 2-3 times as
    much (see ``campaigns.channels.sandbox._issue_stamp``)."""
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    batches = [[outbound(f"b{b}-m{m}") for m in range(50)] for b in range(3)]
    ids = [[r.provider_id for r in sandbox.send(batch)] for batch in batches]
    for earlier, later in pairwise(ids):
        assert max(earlier) < min(later)
    assert len({i for batch in ids for i in batch}) == 150


def outbound(key: str) -> OutboundMessage:
    return OutboundMessage(key, key, "sms", "+8613800000000", None, "hi", "en", NOW)
