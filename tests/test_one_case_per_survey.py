"""One complaint, one case: a survey opens at most one case and one second round, whatever the
customer sends after; a later rating in another round never hides a fresh complaint."""

from datetime import UTC, datetime, timedelta

from campaigns.catalog import load_campaigns
from cases.collect import collect
from cases.second_round import plan_second_round
from core.clock import business_date
from core.tokens import rating_links
from tests.factories import add_action, add_store, add_subscriber
from tests.service_helpers import PUBLIC_URL, sid, sms_form, twilio_post

PHONE = "+8613800000001"
OUR_NUMBER = "+15550001111"  # the number tests.service_helpers.sms_form answers


def _reply(client, body, n):
    form = sms_form(sid("SM", (body, n)), PHONE, body)
    posted = client.post("/webhooks/twilio/sms", **twilio_post("/webhooks/twilio/sms", form))
    assert posted.status_code == 200


def _second_round(con, settings, run):
    """Collect what the service took, then the second round, as the flows run them."""
    from inbox.inbox import Inbox

    collect(con, Inbox.of(settings), reply_window=timedelta(hours=72))
    now = datetime.now(UTC) + timedelta(hours=2)  # past the rule's delay
    campaign = load_campaigns(settings)["birthday"]
    return plan_second_round(
        con, settings, campaign, business_date(settings.zone, now), run, created_at=now
    )


def _counts(con):
    cases = con.execute("SELECT count(*) FROM manager_cases").fetchone()[0]
    second = con.execute("SELECT count(*) FROM care_actions WHERE round = 2").fetchone()[0]
    return cases, second


def test_two_sms_replies_to_one_survey_open_one_case_and_one_second_round(con, service):
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1")
    sent = datetime.now(UTC) - timedelta(hours=1)
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=sent, sender=OUR_NUMBER)
    _reply(client, "1 =cmd|' /C calc'!A0", 1)
    _second_round(con, settings, "r2-a")
    assert _counts(con) == (1, 1)
    _reply(client, "1 waited too long", 2)
    _second_round(con, settings, "r2-b")
    assert _counts(con) == (1, 1)  # the later reply opened nothing
    (comment, score) = con.execute("SELECT comment, score FROM manager_cases").fetchone()
    assert (comment, score) == ("waited too long", 1)  # the case says what they said last


def test_reposting_the_email_rating_page_updates_the_one_case(con, service):
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1", sms_consent=False, voice_consent=False)  # care by email only
    sent = datetime.now(UTC) - timedelta(hours=1)
    add_action(con, "A1", "S1", channel="email", recipient="c1@example.com", sent_at=sent)
    secret = settings.link_secret.get_secret_value()
    page = rating_links("A1", PUBLIC_URL, secret, datetime.now(UTC))[1].removeprefix(PUBLIC_URL)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(page, content="comment=rude", headers=form).status_code == 200
    _second_round(con, settings, "r2-a")
    assert _counts(con) == (1, 1)
    for comment in ("rude staff", "rude staff, and slow"):
        assert client.post(page, content=f"comment={comment}", headers=form).status_code == 200
        _second_round(con, settings, f"r2-{comment}")
    assert _counts(con) == (1, 1)
    assert con.execute("SELECT comment FROM manager_cases").fetchone() == ("rude staff, and slow",)
    emails = con.execute("SELECT count(*) FROM care_actions WHERE round = 2 AND channel = 'email'")
    assert emails.fetchone() == (1,)


def test_a_later_rating_in_another_round_does_not_hide_a_fresh_complaint(con, service):
    """A first-round "1", then minutes later a "5" to another survey's second round: the
    complaint still gets its second round and its case."""
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1")
    before = datetime.now(UTC) - timedelta(hours=3)
    add_action(con, "OLD2", "S1", round=2, recipient=PHONE, sent_at=before, sender=OUR_NUMBER)
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=before, sender="+15550002222")
    # "1" to the first-round survey (sent from another of our numbers), then "5" to OLD2
    form = sms_form(sid("SM", 1), PHONE, "1 排队太久了") | {"To": "+15550002222"}
    client.post("/webhooks/twilio/sms", **twilio_post("/webhooks/twilio/sms", form))
    _reply(client, "5", 2)
    second = _second_round(con, settings, "r2")
    assert second.figures["cases_opened"] == 1
    assert con.execute("SELECT comment FROM manager_cases").fetchone() == ("排队太久了",)
