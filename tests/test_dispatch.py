from collections import Counter
from datetime import UTC, date, datetime

from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import claim, dispatch
from inbox.inbox import Inbox
from tests.factories import add_store, add_subscriber
from tests.test_planning import plan

LATER = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: inside the window


class CountingSandbox(SandboxProvider):
    """The sandbox, counting how often each action is handed to send()."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handed = Counter()

    def send(self, messages):
        self.handed.update(m.idempotency_key for m in messages)
        return super().send(messages)


def provider(settings):
    return CountingSandbox(settings.sandbox_path, Inbox(settings.inbox_path))


def statuses(con):
    return dict(con.execute("SELECT subscriber_id, status FROM care_actions").fetchall())


def test_one_bad_recipient_never_sinks_the_batch(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2", phone="+86123")  # not a number any carrier would take
    add_subscriber(con, "S3", phone=None)
    plan(con, settings)
    sandbox = provider(settings)
    figures = dispatch(con, sandbox, now=LATER)
    assert statuses(con) == {"S1": "sent", "S2": "failed", "S3": "sent"}
    assert figures.sent == {"sms": 1, "email": 1}
    assert figures.failed == {"invalid_recipient": 1}
    error = con.execute("SELECT error_code FROM care_actions WHERE subscriber_id = 'S2'").fetchone()
    assert error == ("invalid_recipient",)


def test_nothing_is_sent_before_it_is_due(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    plan(con, settings)  # due 2026-06-15 02:00 UTC
    sandbox = provider(settings)
    dispatch(con, sandbox, now=datetime(2026, 6, 15, 1, 59, tzinfo=UTC))
    assert statuses(con) == {"S1": "queued"} and not sandbox.handed
    dispatch(con, sandbox, now=datetime(2026, 6, 15, 2, 0, tzinfo=UTC))
    assert statuses(con) == {"S1": "sent"}


def test_a_crash_after_claiming_is_reconciled_not_resent(con, settings):
    add_store(con)
    for n in range(1, 7):
        add_subscriber(con, f"S{n}")
    plan(con, settings)
    sandbox = provider(settings)
    claimed = claim(con, LATER, 4)  # claimed and committed, then the process dies...
    from campaigns.dispatch import _messages

    accepted = _messages(claimed.head(2), LATER, False)
    sandbox.send(accepted)  # ...after the provider accepted two of the four
    figures = dispatch(con, sandbox, now=LATER)
    assert figures.reconciled_sent == 2 and figures.reconciled_requeued == 2
    assert set(statuses(con).values()) == {"sent"}
    assert len(sandbox.handed) == 6 and set(sandbox.handed.values()) == {1}


def test_an_opt_out_after_planning_stops_the_send(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    plan(con, settings)
    con.execute("INSERT INTO opt_outs VALUES ('S1', 'sms', 'opt_out', '2026-06-14', 'r', 'e')")
    sandbox = provider(settings)
    figures = dispatch(con, sandbox, now=LATER)
    assert figures.suppressed_at_send == 1 and not sandbox.handed
    assert con.execute("SELECT status, suppression_reason FROM care_actions").fetchone() == (
        "suppressed",
        "opted_out",
    )


def test_simulated_dispatch_sends_at_the_scheduled_time(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    plan(con, settings)
    dispatch(con, provider(settings), now=LATER, simulated=True)
    sent_at = con.execute("SELECT sent_at FROM care_actions").fetchone()[0]
    assert sent_at == datetime(2026, 6, 15, 2, 0, tzinfo=UTC)
    assert date(2026, 6, 15) == sent_at.date()


def test_the_sandbox_takes_its_largest_batch_unless_told(settings, monkeypatch):
    from core.settings import load_settings
    from flows.common import _batch_size

    sandbox = provider(settings)
    assert _batch_size(settings, sandbox) == sandbox.max_batch == 10_000

    class OnTheNetwork(CountingSandbox):
        remote = True

    assert (
        _batch_size(settings, OnTheNetwork(settings.sandbox_path, Inbox(settings.inbox_path)))
        == 500
    )
    monkeypatch.setenv("CARELOOP_DISPATCH_BATCH_SIZE", "7")
    assert _batch_size(load_settings(), sandbox) == 7
