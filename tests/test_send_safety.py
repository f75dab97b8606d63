"""Safe to point at real customers (issue 8: sending). The real SDKs against local servers that
behave like Twilio and SendGrid where it matters: queued messages, 5xx storms, bad keys."""

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.catalog import load_campaigns
from campaigns.channels.base import OutboundMessage
from campaigns.channels.limits import SlidingWindowLimiter
from campaigns.dispatch import DispatchHaltedError, dispatch
from campaigns.retry import RetryPolicy
from cases.collect import NewsWatch, collect
from cases.second_round import plan_second_round
from core.settings import load_settings
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber
from tests.fakes import SERVICE_NUMBER, Fault, busiest_second, processed_event
from tests.test_live_providers import NOW, VirtualTime, actions, live
from tests.test_planning import plan

WINDOW = timedelta(hours=72)


def db_counts(con):
    return dict(con.execute("SELECT status, count(*) FROM care_actions GROUP BY ALL").fetchall())


def crowd(con, settings, n, **overrides):
    add_store(con)
    for k in range(1, n + 1):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False, **overrides)
    plan(con, settings)


# Rates -------------------------------------------------------------------------------------


def test_a_message_of_n_segments_takes_n_units_of_the_budget():
    t = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        t[0] += seconds

    limiter = SlidingWindowLimiter(1, clock=lambda: t[0], sleep=sleep)
    starts = []
    for _ in range(4):
        limiter.acquire(3)  # a 3-segment message on a 1 segment/s long code
        starts.append(t[0])
    assert starts == [0.0, 3.0, 6.0, 9.0]


def test_segments_per_second_at_the_server_hold_the_cap(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    monkeypatch.setenv("CARELOOP_SMS_RATE", "2")
    settings = load_settings()
    crowd(con, settings, 3, name="欧阳晓东" * 25)  # a long zh-CN greeting: 3 or more segments
    dispatch(con, live(), now=NOW)
    with twilio.state.lock:
        sent = sorted((m["_at"], int(m["num_segments"])) for m in twilio.state.messages)
    segments = sent[0][1]
    assert segments >= 3 and [n for _, n in sent] == [segments] * 3
    rate = segments * 2 / (sent[-1][0] - sent[0][0])  # what followed the first, over the time
    assert rate <= 2 * 1.05, f"{rate:.2f} segments/s against a cap of 2"
    assert busiest_second(sent) == segments  # a message never splits; over time the cap holds


# Retries, the breaker and our own mistakes --------------------------------------------------


def test_a_503_storm_trips_the_breaker_and_figures_match_the_database(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    monkeypatch.setenv("CARELOOP_BREAKER_THRESHOLD", "20")
    settings = load_settings()
    crowd(con, settings, 60)
    twilio.state.faults.extend(Fault(status=503) for _ in range(1000))
    with pytest.raises(DispatchHaltedError, match="20 consecutive requests") as halted:
        dispatch(con, live(), now=NOW)
    posts = [r for r in twilio.state.requests if r.method == "POST"]
    assert 20 <= len(posts) < 20 + settings.provider_concurrency
    assert db_counts(con) == {"queued": 60}  # nobody failed for the provider's outage
    retried = con.execute(
        "SELECT count(*) FROM care_actions WHERE attempts = 1 AND scheduled_at > ?", [NOW]
    ).fetchone()[0]
    assert halted.value.figures.retry_scheduled == retried == len(posts)
    untouched = con.execute("SELECT count(*) FROM care_actions WHERE attempts = 0").fetchone()[0]
    assert untouched == 60 - len(posts)


def test_retries_move_the_schedule_and_then_give_up(con, fakes):
    twilio, _, _ = fakes
    crowd(con, load_settings(), 1)
    twilio.state.faults.extend(Fault(status=503) for _ in range(10))
    policy = RetryPolicy(max_attempts=3, base_seconds=60)
    at, schedules = NOW, []
    for _ in range(3):
        figures = dispatch(con, live(), now=at, retry=policy)
        row = con.execute("SELECT status, scheduled_at, error_code FROM care_actions").fetchone()
        schedules.append(row[1])
        at = row[1]  # the next run comes when the retry is due
    assert len([r for r in twilio.state.requests if r.method == "POST"]) == 3
    assert 30 <= (schedules[0] - NOW).total_seconds() <= 60  # base, with jitter
    assert 60 <= (schedules[1] - schedules[0]).total_seconds() <= 120  # doubled
    assert row[0] == "failed" and row[2] == "retries_exhausted"
    assert figures.failed == {"retries_exhausted": 1} and figures.retry_scheduled == 0


def test_a_wrong_twilio_token_stops_the_run_and_fails_nobody(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong")
    settings = load_settings()
    crowd(con, settings, 40)
    with pytest.raises(DispatchHaltedError, match="TWILIO_AUTH_TOKEN"):
        dispatch(con, live(), now=NOW)
    assert db_counts(con) == {"queued": 40}
    assert con.execute("SELECT max(attempts) FROM care_actions").fetchone() == (0,)
    assert len(twilio.state.requests) <= settings.provider_concurrency


def test_a_wrong_token_found_while_settling_stops_the_run_too(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    stalled_sms(con, twilio)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "rotated-badly")
    with pytest.raises(DispatchHaltedError, match="TWILIO_AUTH_TOKEN"):
        dispatch(con, live(), now=NOW + timedelta(minutes=5))
    assert db_counts(con) == {"sending": 1}  # still unsettled: never resent on a guess


def test_a_wrong_sendgrid_key_costs_one_request_and_fails_nobody(con, fakes, monkeypatch):
    _, sendgrid, _ = fakes
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong")
    settings = load_settings()
    add_store(con)
    for k in range(1, 65):
        add_subscriber(con, f"S{k}", phone=None)
    plan(con, settings)
    with pytest.raises(DispatchHaltedError, match="SENDGRID_API_KEY"):
        dispatch(con, live(), now=NOW)
    assert len(sendgrid.state.requests) == 1 and db_counts(con) == {"queued": 64}


def test_a_halted_flow_fails_with_the_credential_named(con, fakes, monkeypatch, prefect_harness):
    from flows.dispatch_outbox import dispatch_outbox

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong")
    crowd(con, load_settings(), 2)
    con.close()
    with pytest.raises(DispatchHaltedError, match="TWILIO_AUTH_TOKEN"):
        dispatch_outbox(now=NOW)


# Reconciliation ---------------------------------------------------------------------------


def stalled_sms(con, twilio, n=1):
    """n SMS whose requests time out while Twilio queues them (no date_sent yet)."""
    twilio.state.auto_release = False
    twilio.state.faults.extend(Fault(delay=1.0) for _ in range(n))
    crowd(con, load_settings(), n)
    figures = dispatch(con, live(), now=NOW)
    assert figures.in_flight == n and twilio.state.wait_for(n)


def test_a_message_still_queued_at_twilio_is_found_not_resent(con, fakes):
    twilio, _, _ = fakes
    stalled_sms(con, twilio)
    figures = dispatch(con, live(), now=NOW + timedelta(minutes=5))  # past the grace
    assert figures.reconciled_sent == 1 and figures.reconciled_requeued == 0
    assert len(twilio.sent_to("+8613800000001")) == 1
    assert actions(con)["S1"][1:3] == ("sent", twilio.sent_to("+8613800000001")[0]["sid"])


def msg(action_id, recipient, body, claimed):
    return OutboundMessage(action_id, action_id, "sms", recipient, None, body, "en", claimed)


@pytest.mark.usefixtures("fakes")
def test_one_provider_message_confirms_one_action_at_most():
    provider = live().by_channel["sms"]
    claimed = datetime.now(UTC)
    provider.send([msg("A1", "+8613800000001", "same words", claimed)])
    settled = provider.settle(
        [
            msg("A1", "+8613800000001", "same words", claimed),
            msg("A2", "+8613800000001", "same words", claimed),
        ],
        claimed + timedelta(minutes=5),
    )
    assert sorted(s.verdict for s in settled) == ["requeue", "sent"]


def test_nothing_is_resent_while_an_unmatched_message_is_queued_at_twilio(fakes):
    twilio, _, _ = fakes
    twilio.state.auto_release = False
    provider = live().by_channel["sms"]
    claimed = datetime.now(UTC)
    provider.send([msg("OTHER", "+8613800000001", "other words", claimed)])
    [settled] = provider.settle(
        [msg("A1", "+8613800000001", "mine", claimed)], claimed + timedelta(minutes=5)
    )
    assert settled.verdict == "wait"
    twilio.release()
    [settled] = provider.settle(
        [msg("A1", "+8613800000001", "mine", claimed)], claimed + timedelta(minutes=5)
    )
    assert settled.verdict == "requeue"


def test_a_restart_asks_twilio_per_recipient_concurrently(con, fakes):
    twilio, _, _ = fakes
    twilio.state.list_latency = 0.05
    provider = live().by_channel["sms"]
    claimed = datetime.now(UTC)
    pending = [msg(f"A{k}", f"+86138{k:08d}", "hi", claimed) for k in range(1, 41)]
    pending.append(msg("A41", "+8613800000001", "again", claimed))  # same number: one request
    settled = provider.settle(pending, claimed + timedelta(minutes=5))
    gets = [r for r in twilio.state.requests if r.method == "GET"]
    assert len(settled) == 41 and len(gets) == 40
    assert twilio.state.most_lists_in_flight > 1


# Messaging Service ------------------------------------------------------------------------


def test_a_messaging_service_reply_reaches_the_second_round(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    monkeypatch.delenv("TWILIO_FROM")
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "1" * 32)
    twilio.state.auto_release = False
    settings = load_settings()
    crowd(con, settings, 1)
    dispatch(con, live(), now=NOW)
    assert con.execute("SELECT sender FROM care_actions").fetchone() == (None,)
    inbox = Inbox(settings.inbox_path)
    reply = {"MessageSid": "SM" + "a" * 32, "From": "+8613800000001", "To": SERVICE_NUMBER}
    inbox.put("sms", reply["MessageSid"], NOW + timedelta(minutes=9), reply | {"Body": "1 太差"})
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT attribution, score FROM evaluations").fetchall() == [("matched", 1)]
    second = plan_second_round(
        con, settings, load_campaigns(settings)["birthday"], NOW.date(), "r2"
    )
    assert second.figures["cases_opened"] == 1 and sum(second.figures["queued"].values()) == 1


def test_the_status_callback_records_the_messaging_services_number(con, fakes, settings):
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=NOW, sender=None)
    inbox = Inbox(settings.inbox_path)
    callback = {"MessageSid": "P-A1", "MessageStatus": "sent", "From": SERVICE_NUMBER}
    inbox.put("status", "P-A1:sent", NOW, callback)
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT sender FROM care_actions").fetchone() == (SERVICE_NUMBER,)


def test_a_status_callback_naming_its_action_settles_a_send_whose_id_was_never_learned(
    con, fakes, settings
):
    """The send timed out before Twilio's answer (no provider id in the outbox): the callback,
    whose URL names the action, still finds it."""
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=NOW, sender=None)
    con.execute("UPDATE care_actions SET provider_id = NULL, status = 'sending'")
    inbox = Inbox(settings.inbox_path)
    callback = {"MessageSid": "SM-A1", "MessageStatus": "delivered", "action_id": "A1"}
    inbox.put("status", "SM-A1:delivered", NOW, callback)
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT status, provider_id FROM care_actions").fetchone() == (
        "delivered",
        "SM-A1",
    )


# SendGrid after a crash -------------------------------------------------------------------


def emails(con, settings, n):
    add_store(con)
    for k in range(1, n + 1):
        add_subscriber(con, f"S{k}", phone=None)
    plan(con, settings)


def test_an_event_for_an_email_left_sending_settles_it(con, fakes):
    _, sendgrid, settings = fakes
    emails(con, settings, 1)
    sendgrid.state.faults.append(Fault(delay=1.0))  # times out, SendGrid takes it all the same
    assert dispatch(con, live(), now=NOW).in_flight == 1
    assert sendgrid.state.wait_for(1)
    inbox = Inbox(settings.inbox_path)
    [person] = [m["personalization"] for m in sendgrid.state.messages]
    event = processed_event(person, sendgrid.state.messages[0]["message_id"])
    inbox.put("status", event["sg_event_id"], NOW + timedelta(seconds=5), event)
    figures = dispatch(con, live(), now=NOW + timedelta(hours=1))
    assert figures.reconciled_sent == 1 and len(sendgrid.state.messages) == 1
    assert actions(con)["S1"][1:3] == ("sent", sendgrid.state.messages[0]["message_id"])


def test_collect_settles_an_email_still_sending_and_keeps_its_rating(con, fakes):
    _, sendgrid, settings = fakes
    emails(con, settings, 1)
    sendgrid.state.faults.append(Fault(delay=1.0))
    dispatch(con, live(), now=NOW)
    assert sendgrid.state.wait_for(1)
    inbox = Inbox(settings.inbox_path)
    message = sendgrid.state.messages[0]
    event = processed_event(message["personalization"], message["message_id"])
    event["event"], event["timestamp"] = "delivered", int((NOW + timedelta(seconds=4)).timestamp())
    inbox.put("status", event["sg_event_id"], NOW + timedelta(seconds=5), event)
    action = event["action_id"]
    inbox.put(
        "email_rating", f"{action}:2", NOW + timedelta(hours=1), {"action_id": action, "score": 2}
    )
    collect(con, inbox, reply_window=WINDOW)
    row = con.execute("SELECT status, sent_at, provider_id FROM care_actions").fetchone()
    assert row == ("delivered", NOW + timedelta(seconds=4), message["message_id"])
    assert con.execute("SELECT attribution, score FROM evaluations").fetchall() == [("matched", 2)]


def test_an_email_with_no_event_waits_until_the_stream_shows_it_never_went(con, fakes):
    _, sendgrid, settings = fakes
    emails(con, settings, 1)
    sendgrid.state.faults.append(Fault(status=None, delay=1.0))
    sendgrid.state.faults[0].status = None
    # The request times out and SendGrid never takes it: the fake answers after the client left,
    # and we drop what it accepted, as if the connection died before SendGrid read the body.
    dispatch(con, live(), now=NOW)
    assert sendgrid.state.wait_for(1)
    with sendgrid.state.lock:
        sendgrid.state.messages.clear()
    provider = live()
    later = NOW + timedelta(minutes=20)
    assert dispatch(con, provider, now=later).reconciled_waiting == 1  # no news is no proof
    inbox = Inbox(settings.inbox_path)
    newer = {
        "event": "processed",
        "action_id": "ca_other",
        "careloop_sent": f"{later.timestamp()}",
        "sg_event_id": "e-newer",
        "sg_message_id": "x.y",
    }
    inbox.put("status", "e-newer", later, newer)
    figures = dispatch(con, provider, now=later + timedelta(minutes=1))
    assert figures.reconciled_requeued == 1 and figures.sent == {"email": 1}
    assert len(sendgrid.state.messages) == 1  # SendGrid never had it: it goes out once


# A 5xx is no proof that nothing went ------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_5xx_after_twilio_created_it_is_settled_not_sent_twice(con, fakes, status, channel):
    twilio, _, settings = fakes
    add_store(con)
    add_subscriber(con, "S1", email=None, sms_consent=channel == "sms")
    plan(con, settings)
    twilio.state.faults.append(Fault(status=status, handled=True))
    first = dispatch(con, live(), now=NOW)
    assert first.in_flight == 1 and first.retry_scheduled == 0
    assert actions(con)["S1"][1] == "sending"
    assert len(twilio.sent_to("+8613800000001")) == 1  # created, though the answer was a 5xx
    again = dispatch(con, live(), now=NOW + timedelta(minutes=3))
    assert again.reconciled_sent == 1 and actions(con)["S1"][1] == "sent"
    [created] = twilio.sent_to("+8613800000001")
    assert actions(con)["S1"][2] == created["sid"]


def test_a_5xx_that_created_nothing_is_sent_once_after_the_grace(con, fakes):
    twilio, _, settings = fakes
    crowd(con, settings, 1)
    twilio.state.faults.append(Fault(status=502))
    assert dispatch(con, live(), now=NOW).in_flight == 1 and not twilio.sent_to("+8613800000001")
    within = dispatch(con, live(), now=NOW + timedelta(seconds=30))
    assert within.reconciled_waiting == 1 and not twilio.sent_to("+8613800000001")
    after = dispatch(con, live(), now=NOW + timedelta(minutes=3))
    assert after.reconciled_requeued == 1 and after.sent == {"sms": 1}
    assert len(twilio.sent_to("+8613800000001")) == 1


def test_a_503_is_turned_away_unhandled_and_tried_again_in_the_run(con, fakes):
    twilio, _, settings = fakes
    crowd(con, settings, 1)
    twilio.state.faults.append(Fault(status=503))
    time = VirtualTime(NOW)
    figures = dispatch(con, live(), now=NOW, clock=time.clock, sleep=time.sleep)
    assert figures.retry_scheduled == 1 and figures.sent == {"sms": 1}
    assert len(twilio.sent_to("+8613800000001")) == 1


def test_an_email_batch_answered_500_after_sendgrid_took_it_is_settled_by_its_events(
    con, fakes, caplog
):
    _, sendgrid, settings = fakes
    emails(con, settings, 3)
    sendgrid.state.faults.append(Fault(status=500, handled=True))
    first = dispatch(con, live(), now=NOW)
    assert first.in_flight == 3 and len(sendgrid.state.messages) == 3
    with caplog.at_level("WARNING", logger="careloop.sendgrid"):
        waiting = dispatch(con, live(), now=NOW + timedelta(minutes=20))
    assert waiting.reconciled_waiting == 3 and len(sendgrid.state.messages) == 3
    assert "'processed' events" in caplog.text  # no event ever came: the operator is told
    inbox = Inbox(settings.inbox_path)
    for message in sendgrid.state.messages:
        event = processed_event(message["personalization"], message["message_id"])
        inbox.put("status", event["sg_event_id"], NOW + timedelta(seconds=5), event)
    settled = dispatch(con, live(), now=NOW + timedelta(minutes=21))
    assert settled.reconciled_sent == 3 and db_counts(con) == {"sent": 3}
    assert len(sendgrid.state.messages) == 3


def test_an_email_never_heard_of_becomes_unconfirmed_after_a_day(con, fakes):
    _, sendgrid, settings = fakes
    emails(con, settings, 1)
    sendgrid.state.faults.append(Fault(delay=1.0))
    dispatch(con, live(), now=NOW)
    figures = dispatch(con, live(), now=NOW + timedelta(hours=25))
    assert figures.unconfirmed == 1 and db_counts(con) == {"unconfirmed": 1}


# Opt-outs at send time --------------------------------------------------------------------


@pytest.mark.parametrize("watch", [False, True], ids=["collect", "news-watch"])
def test_an_opt_out_between_two_batches_stops_the_second(con, settings, watch):
    from campaigns.channels.sandbox import SandboxProvider

    inbox = Inbox(settings.inbox_path)
    add_store(con)
    for k in (1, 2):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)

    phones = {"+8613800000001", "+8613800000002"}

    class OptOutArrives(SandboxProvider):
        """While the first batch goes, the other customer texts TD."""

        def send(self, messages):
            results = super().send(messages)
            [other] = phones - {m.recipient for m in messages}
            td = {"MessageSid": "SM" + "b" * 32, "From": other, "Body": "TD"}
            inbox.put("sms", td["MessageSid"], NOW - timedelta(seconds=1), td)
            return results

    figures = dispatch(
        con,
        OptOutArrives(settings.sandbox_path, inbox),
        now=NOW,
        batch_size=1,
        refresh=NewsWatch(lambda: con, inbox, WINDOW)
        if watch
        else lambda: collect(con, inbox, reply_window=WINDOW),
    )
    assert figures.sent == {"sms": 1} and figures.suppressed_at_send == 1
    statuses = con.execute("SELECT status FROM care_actions ORDER BY status").fetchall()
    assert statuses == [("delivered",), ("suppressed",)]  # the sandbox reports delivery


def test_receipts_alone_wait_for_collect_while_sending(con, settings):
    from campaigns.channels.sandbox import SandboxProvider

    inbox = Inbox(settings.inbox_path)
    add_store(con)
    for k in (1, 2, 3):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)
    watch = NewsWatch(lambda: con, inbox, WINDOW)
    sandbox = SandboxProvider(settings.sandbox_path, inbox)
    figures = dispatch(con, sandbox, now=NOW, batch_size=1, refresh=watch)
    assert figures.sent == {"sms": 3}
    assert con.execute("SELECT count(*) FROM delivery_events").fetchone() == (0,)
    collect(con, inbox, reply_window=WINDOW)  # the next collect takes the three receipts
    statuses = con.execute("SELECT DISTINCT status FROM care_actions").fetchall()
    assert statuses == [("delivered",)]
