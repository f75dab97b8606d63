"""The send standard holds when the message leaves, not only when its batch was claimed: a
batch at a sender's rate can take many minutes (500 two-segment texts at 1 segment a second
take 17), so the window, the expiry and a fresh opt-out are looked at again right before each
request. The real Twilio SDK against the local fake; the run's clock moves with the requests
the fake has received, so nothing waits on the wall clock."""

from datetime import UTC, datetime, timedelta

from campaigns.dispatch import dispatch
from cases.late_opt_outs import LateOptOuts
from core.settings import load_settings
from inbox.inbox import Inbox
from tests.factories import add_store, add_subscriber
from tests.test_live_providers import actions, live
from tests.test_planning import plan

EVENING = datetime(2026, 6, 15, 12, 40, tzinfo=UTC)  # 20:40 in Shanghai; the window ends 21:00
STEP = timedelta(minutes=10)


def texts(con, settings, n):
    add_store(con)
    for k in range(1, n + 1):
        add_subscriber(con, f"S{k}", email=None, voice_consent=False)
    plan(con, settings)


def one_at_a_time(monkeypatch):
    monkeypatch.setenv("CARELOOP_PROVIDER_CONCURRENCY", "1")
    return load_settings()


def posts(twilio):
    return [r for r in twilio.state.requests if r.method == "POST"]


def test_texts_claimed_before_quiet_hours_do_not_leave_after_them(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    settings = one_at_a_time(monkeypatch)
    texts(con, settings, 4)

    def clock():  # each request takes ten minutes to leave: 20:40, 20:50, 21:00, ...
        return EVENING + STEP * len(posts(twilio))

    figures = dispatch(con, live(), now=EVENING, clock=clock)
    assert figures.sent == {"sms": 2} and len(posts(twilio)) == 2
    statuses = sorted(status for _, status, *_ in actions(con).values())
    assert statuses == ["queued", "queued", "sent", "sent"]
    # A birthday greeting is never sent the day after: by the next window they have expired.
    morning = EVENING + timedelta(hours=13)  # 09:40 in Shanghai
    assert dispatch(con, live(), now=morning).expired == 2 and len(posts(twilio)) == 2


def test_a_text_past_its_expiry_mid_batch_stays_unsent_and_then_expires(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    settings = one_at_a_time(monkeypatch)
    texts(con, settings, 3)
    con.execute("UPDATE care_actions SET expires_at = ?", [EVENING + STEP + STEP / 2])

    def clock():
        return EVENING + STEP * len(posts(twilio))

    figures = dispatch(con, live(), now=EVENING, clock=clock)
    assert figures.sent == {"sms": 2} and len(posts(twilio)) == 2
    later = dispatch(con, live(), now=EVENING + timedelta(minutes=30))
    assert later.expired == 1 and len(posts(twilio)) == 2


def test_a_td_that_arrives_mid_batch_stops_that_customers_text(con, fakes, monkeypatch):
    twilio, _, _ = fakes
    settings = one_at_a_time(monkeypatch)
    texts(con, settings, 4)
    inbox = Inbox(settings.inbox_path)
    watch = LateOptOuts(inbox, every=0.0)
    phones = [p for (p,) in con.execute("SELECT recipient FROM care_actions ORDER BY 1").fetchall()]
    asked = []

    def meanwhile(recipient):
        """The first message is leaving when another customer texts TD to the service."""
        if not asked:
            who = next(p for p in phones if p != recipient)
            body = {"MessageSid": "SM-td", "From": who, "Body": "TD 退订"}
            inbox.put("sms", "SM-td", EVENING, body)
        asked.append(recipient)
        return watch(recipient)

    figures = dispatch(con, live(), now=EVENING, stop_watch=meanwhile)
    reached = {r.form["To"][0] for r in posts(twilio)}
    [stopped] = set(phones) - reached
    assert figures.sent == {"sms": 3} and stopped != asked[0]
    status = con.execute("SELECT status FROM care_actions WHERE recipient = ?", [stopped])
    assert status.fetchone() == ("queued",)  # the next run's screen suppresses it once collected
    assert LateOptOuts(inbox, every=0.0)(stopped) is False  # a new run's watch starts after it
