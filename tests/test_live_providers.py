"""The real Twilio and SendGrid SDKs against local servers that speak their APIs."""

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from campaigns.channels.factory import get_provider
from campaigns.dispatch import dispatch
from campaigns.retry import RetryPolicy
from core.settings import ConfigError, load_settings
from tests.conftest import PUBLIC, SENDER
from tests.factories import add_store, add_subscriber
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, SENDGRID_KEY, Fault
from tests.test_planning import plan

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai


def live(**overrides):
    return get_provider(load_settings(**overrides))


def actions(con):
    return {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT subscriber_id, action_id, status, provider_id, error_code, body "
            "FROM care_actions"
        ).fetchall()
    }


def people(con):
    add_store(con)
    add_subscriber(con, "S1")  # sms
    add_subscriber(con, "S2", phone=None)  # email
    add_subscriber(con, "S3", email=None, sms_consent=False)  # voice


def test_the_exact_requests_the_sdks_make(con, fakes):
    twilio, sendgrid, settings = fakes
    people(con)
    plan(con, settings)
    figures = dispatch(con, live(), now=NOW)
    assert dict(figures.sent) == {"sms": 1, "email": 1, "voice": 1}
    rows = actions(con)
    sms = next(r for r in twilio.state.requests if r.path.endswith("/Messages.json"))
    assert sms.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert sms.headers["Authorization"].startswith("Basic ")
    assert sms.form == {
        "To": ["+8613800000001"],
        "Body": [rows["S1"][4]],
        "From": [SENDER],
        "StatusCallback": [f"{PUBLIC}/webhooks/twilio/status/{rows['S1'][0]}"],
    }
    call = next(r for r in twilio.state.requests if r.path.endswith("/Calls.json"))
    twiml = unquote(call.form["Twiml"][0])
    action_id = rows["S3"][0]
    assert call.form["To"] == ["+8613800000003"] and call.form["From"] == [SENDER]
    assert call.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert call.form["StatusCallback"] == [f"{PUBLIC}/webhooks/twilio/status/{action_id}"]
    assert (
        f'<Gather action="{PUBLIC}/webhooks/twilio/voice/{action_id}/gather?locale=zh-CN" '
        'input="dtmf" numDigits="1" timeout="5"><Say language="zh-CN">'
    ) in twiml
    mail = sendgrid.state.requests[0]
    assert mail.path == "/v3/mail/send"
    assert mail.headers["Authorization"] == f"Bearer {SENDGRID_KEY}"
    person = mail.body["personalizations"][0]
    assert person["to"] == [{"email": "c2@example.com"}]
    assert person["custom_args"] == {
        "action_id": rows["S2"][0],
        "careloop_sent": f"{NOW.timestamp():.3f}",
    }
    assert person["headers"]["List-Unsubscribe"].startswith(f"<{PUBLIC}/unsubscribe/")
    assert person["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert person["substitutions"]["-care_body-"] == rows["S2"][4]
    assert {r[1] for r in rows.values()} == {"sent"}
    assert rows["S1"][2] == twilio.sent_to("+8613800000001")[0]["sid"]
    assert rows["S3"][2] == twilio.sent_to("+8613800000003")[0]["sid"]
    assert rows["S2"][2] == sendgrid.state.messages[0]["message_id"]


def test_a_messaging_service_replaces_the_sender(con, fakes, monkeypatch):
    twilio, _, settings = fakes
    monkeypatch.delenv("TWILIO_FROM")
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "1" * 32)
    settings = load_settings()
    add_store(con)
    add_subscriber(con, "S1")
    plan(con, settings)
    dispatch(con, live(), now=NOW)
    form = twilio.state.requests[0].form
    assert form["MessagingServiceSid"] == ["MG" + "1" * 32] and "From" not in form


class VirtualTime:
    """A run's clock and sleep, in simulated seconds: backoff is observed, never waited out."""

    def __init__(self, start):
        self.now, self.slept = start, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_429_waits_for_retry_after_and_503_is_retried(con, fakes):
    twilio, _, settings = fakes
    twilio.state.faults.extend([Fault(status=429, retry_after=7), Fault(status=503)])
    add_store(con)
    add_subscriber(con, "S1", email=None)
    plan(con, settings)
    time = VirtualTime(NOW)
    figures = dispatch(
        con, live(), now=NOW, clock=time.clock, sleep=time.sleep, retry=RetryPolicy(base_seconds=2)
    )
    posts = [r for r in twilio.state.requests if r.method == "POST"]
    assert len(posts) == 3 and time.slept[0] >= 7.0  # Retry-After, though backoff is shorter
    assert 2.0 <= time.slept[1] <= 4.0  # the second failure: base * 2, with jitter
    assert actions(con)["S1"][1] == "sent" and len(twilio.sent_to("+8613800000001")) == 1
    assert figures.sent == {"sms": 1} and figures.retry_scheduled == 2


def test_21610_is_an_opt_out_and_never_retried(con, fakes):
    twilio, _, settings = fakes
    twilio.state.opted_out.add("+8613800000001")
    add_store(con)
    add_subscriber(con, "S1", email=None, voice_consent=False)
    plan(con, settings)
    figures = dispatch(con, live(), now=NOW)
    assert figures.opted_out_at_provider == 1
    assert actions(con)["S1"][1:4:2] == ("failed", "21610")
    assert len(twilio.state.requests) == 1
    opted = con.execute("SELECT channel FROM active_opt_outs ORDER BY ALL").fetchall()
    assert opted == [("sms",), ("voice",)]  # one phone, one consent
    plan(con, settings, "tenure", run="r2")  # any later campaign: sms is off for S1
    assert con.execute(
        "SELECT count(*) FROM care_actions WHERE campaign_id = 'tenure' AND channel = 'sms'"
    ).fetchone() == (0,)


def test_an_invalid_number_fails_once_and_alone(con, fakes):
    twilio, _, settings = fakes
    add_store(con)
    add_subscriber(con, "S1", phone="+1555", email=None)
    add_subscriber(con, "S2", email=None)
    plan(con, settings)
    dispatch(con, live(), now=NOW)
    rows = actions(con)
    assert rows["S1"][1:4:2] == ("failed", "21211") and rows["S2"][1] == "sent"
    assert len([r for r in twilio.state.requests if r.form.get("To") == ["+1555"]]) == 1


def test_a_timeout_is_reconciled_not_resent(con, fakes):
    twilio, _, settings = fakes
    twilio.state.faults.append(Fault(delay=1.0))  # answers after the client gave up, but sends
    add_store(con)
    add_subscriber(con, "S1", email=None)
    plan(con, settings)
    provider = live()
    figures = dispatch(con, provider, now=NOW)
    assert figures.in_flight == 1 and actions(con)["S1"][1] == "sending"
    assert twilio.state.wait_for(1)  # the stalled answer: Twilio took it all the same
    again = dispatch(con, provider, now=NOW + timedelta(seconds=30))  # within the grace
    assert again.reconciled_requeued == 0 and actions(con)["S1"][1] in ("sending", "sent")
    dispatch(con, provider, now=NOW + timedelta(minutes=3))
    assert actions(con)["S1"][1] == "sent"
    assert len(twilio.sent_to("+8613800000001")) == 1


def test_one_rejected_address_never_sinks_an_email_batch(con, fakes):
    _, sendgrid, settings = fakes
    add_store(con)
    for n in range(1, 6):
        add_subscriber(con, f"S{n}", phone=None)
    add_subscriber(con, "S6", phone=None, email="not an email")
    sendgrid.state.rejected.add("c3@example.com")
    plan(con, settings)
    figures = dispatch(con, live(), now=NOW)
    rows = actions(con)
    assert rows["S3"][1:4:2] == ("failed", "400") and rows["S6"][1:4:2] == (
        "failed",
        "invalid_email",
    )
    assert {rows[f"S{n}"][1] for n in (1, 2, 4, 5)} == {"sent"}
    assert figures.sent == {"email": 4}
    assert sorted(m["to"] for m in sendgrid.state.messages) == [
        "c1@example.com",
        "c2@example.com",
        "c4@example.com",
        "c5@example.com",
    ]


def test_the_configured_rate_holds_in_every_second(con, fakes, monkeypatch):
    twilio, _, settings = fakes
    monkeypatch.setenv("CARELOOP_SMS_RATE", "10")
    settings = load_settings()
    add_store(con)
    for n in range(30):
        add_subscriber(con, f"S{n}", email=None, voice_consent=False)
    plan(con, settings)
    dispatch(con, live(), now=NOW)
    arrivals = sorted(twilio.state.accepted_times())
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert len(arrivals) == 30 and busiest <= 10
    assert arrivals[-1] - arrivals[0] >= 1.9  # 30 at 10/s cannot take under 2 s


def test_missing_credentials_are_named(settings, monkeypatch):
    monkeypatch.setenv("CARELOOP_PROVIDER", "live")
    monkeypatch.setenv("CARELOOP_SECRET_BLOCKS", "false")
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "SENDGRID_API_KEY", "TWILIO_FROM"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ConfigError, match="TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SENDGRID_API_KEY, TWILIO_FROM or"
    ):
        live()


def test_secrets_stay_out_of_reprs(fakes):
    provider = live()
    text = (
        repr(load_settings())
        + repr(provider.by_channel["sms"].config)
        + repr(provider.by_channel["email"].config)
    )
    assert AUTH_TOKEN not in text and SENDGRID_KEY not in text


def test_a_call_that_timed_out_is_found_in_the_call_list(con, fakes):
    twilio, _, settings = fakes
    twilio.state.faults.append(Fault(delay=1.0))
    add_store(con)
    add_subscriber(con, "S1", email=None, sms_consent=False)
    plan(con, settings)
    provider = live()
    assert dispatch(con, provider, now=NOW).in_flight == 1
    assert twilio.state.wait_for(1)
    figures = dispatch(con, provider, now=NOW + timedelta(minutes=3))
    assert figures.reconciled_sent == 1 and actions(con)["S1"][1] == "sent"
    assert [m["_kind"] for m in twilio.sent_to("+8613800000001")] == ["Calls"]
