"""A sandbox send settled by its receipt (collect between a crash and the resume)."""

from datetime import timedelta

import pytest

import campaigns.dispatch as dispatch_module
from campaigns.channels.sandbox import SANDBOX_NUMBER, SandboxProvider
from campaigns.dispatch import dispatch
from cases.collect import collect
from inbox.inbox import Inbox
from tests.factories import add_store, add_subscriber
from tests.test_live_providers import NOW
from tests.test_planning import plan
from tests.test_sandbox_crash_receipts import WINDOW, Crash


def test_an_action_settled_by_its_receipt_records_the_send_as_the_resume_would(
    con, settings, monkeypatch
):
    """When the scheduled collect comes before the resume (the usual order), the receipt's
    action_id settles the queued action: delivered, from the sandbox's number (it was not
    recorded before), dated by the receipt, seconds after the send."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None, voice_consent=False)
    plan(con, settings)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    monkeypatch.setattr(
        dispatch_module, "_write_outcome", lambda *a, **k: (_ for _ in ()).throw(Crash())
    )
    with pytest.raises(Crash):
        dispatch(con, sandbox, now=NOW)
    collect(con, inbox, reply_window=WINDOW, now=NOW + timedelta(minutes=1))
    [logged] = sandbox.sent_after(0)
    [(status, sent_at, sender)] = con.execute(
        "SELECT status, sent_at, sender FROM care_actions"
    ).fetchall()
    assert status == "delivered"
    assert sender == SANDBOX_NUMBER  # what the normal path records for an SMS
    # dated by its receipt, as a send settled from any provider's event is: seconds after
    assert timedelta(0) <= sent_at - logged.sent_at <= timedelta(seconds=5)
