"""The standard, enforced at send time: windows, opt-outs, caps, holdouts, throughput."""

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from campaigns.catalog import load_campaigns
from campaigns.channels.factory import get_provider
from campaigns.channels.limits import SlidingWindowLimiter
from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from cases.second_round import plan_second_round
from core.settings import load_settings
from inbox.inbox import Inbox
from tests.factories import add_sms_crowd, add_store, add_subscriber
from tests.test_planning import plan, plan_loaded
from warehouse.ratings import rebuild_ratings


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_limiter_never_allows_more_than_the_rate_in_any_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, clock=clock, sleep=clock.sleep)
    times = []
    for units in [1, 1, 1, 1, 2, 1, 3, 1]:
        limiter.acquire(units)
        times += [clock.now] * units
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) == 3
    assert times[:4] == [0.0, 0.0, 0.0, 1.0]
    slow = SlidingWindowLimiter(0.5, clock=clock, sleep=clock.sleep)  # one per two seconds
    start = clock.now
    slow.acquire()
    slow.acquire()
    assert clock.now - start == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("sender", "rate", "capacity"),
    [
        ("long_code", None, 1),
        ("toll_free", None, 3),
        ("short_code", None, 100),
        ("long_code", "25", 25),
    ],
)
def test_sender_throughput_is_wired_from_configuration(
    settings, monkeypatch, sender, rate, capacity
):
    for name, value in {
        "CARELOOP_PROVIDER": "live",
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM": "+15550001111",
        "SENDGRID_API_KEY": "k",
        "CARELOOP_SECRET_BLOCKS": "false",
        "CARELOOP_SMS_SENDER_TYPE": sender,
    }.items():
        monkeypatch.setenv(name, value)
    if rate:
        monkeypatch.setenv("CARELOOP_SMS_RATE", rate)
    sms = get_provider(load_settings()).by_channel["sms"]
    assert sms.limiter.capacity == capacity and sms.limiter.window == pytest.approx(1.05)


def sandbox(settings):
    return SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))


def status(con, subscriber):
    return con.execute(
        "SELECT status, scheduled_at FROM care_actions WHERE subscriber_id = ?", [subscriber]
    ).fetchone()


def test_sms_due_outside_the_window_waits_for_the_next_one(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None)  # SMS, Shanghai
    add_subscriber(con, "S2", phone=None)  # email: no window
    loaded = load_campaigns(settings)["birthday"]
    care = loaded.campaign.care.model_copy(update={"valid_for": "48h"})  # may wait a night
    plan_loaded(
        con, settings, replace(loaded, campaign=loaded.campaign.model_copy(update={"care": care}))
    )  # due 10:00 Shanghai = 02:00 UTC
    late = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    figures = dispatch(con, sandbox(settings), now=late)
    assert figures.deferred_to_window == 1 and figures.sent == {"email": 1}
    assert status(con, "S1") == ("queued", datetime(2026, 6, 16, 1, 0, tzinfo=UTC))  # 09:00
    dispatch(con, sandbox(settings), now=datetime(2026, 6, 16, 0, 59, tzinfo=UTC))
    assert status(con, "S1")[0] == "queued"
    dispatch(con, sandbox(settings), now=datetime(2026, 6, 16, 1, 0, tzinfo=UTC))
    assert status(con, "S1")[0] == "sent"


def test_held_out_customers_are_never_sent_anything(con, settings):
    add_store(con)
    add_sms_crowd(con, 300)
    plan(con, settings, holdout=20.0)
    provider = sandbox(settings)
    dispatch(con, provider, now=datetime(2026, 6, 15, 3, 0, tzinfo=UTC))
    held = [
        r[0]
        for r in con.execute(
            "SELECT idempotency_key FROM care_actions WHERE status = 'held_out'"
        ).fetchall()
    ]
    assert len(held) > 20
    assert provider.find_sent([_stub(key) for key in held]) == {}


def _stub(key):
    from campaigns.channels.base import OutboundMessage

    return OutboundMessage(key, key, "sms", "", None, "", "zh-CN", datetime.now(UTC))


def test_a_complaint_gets_its_second_round_through_the_cap(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    plan(con, settings)  # birthday contact on June 15
    con.execute("UPDATE care_actions SET status = 'sent', sent_at = scheduled_at")
    action = con.execute("SELECT action_id FROM care_actions").fetchone()[0]
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
        campaign_id, round, store_id, channel, intent, score, attribution, received_at)
        VALUES ('E1', 'k1', ?, 'S1', 'birthday', 1, 'ST1', 'sms', 'rating', 1, 'matched',
                TIMESTAMPTZ '2026-06-15 03:00+00')""",
        [action],
    )
    rebuild_ratings(con)  # written as collect would have
    campaign = load_campaigns(settings)["birthday"]
    second = plan_second_round(con, settings, campaign, date(2026, 6, 15), "r2")
    assert second.figures["queued"] == {"voice": 1} and second.figures["cases_opened"] == 1
    assert con.execute(
        "SELECT count(*) FROM care_actions WHERE round = 2 AND status = 'queued'"
    ).fetchone() == (1,)
