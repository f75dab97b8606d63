"""One phone, one consent: an opt-out by text stops automated calls to that number too, and a
key-press opt-out on a call stops texts (the FCC's revocation rule covers calls and texts alike).
Email consent stays separate. Planning, dispatch (before each batch too) and follow-ups heed it.
"""

from datetime import UTC, date, datetime, timedelta

from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from cases.collect import collect
from cases.follow_up import plan_follow_ups
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber
from tests.manager_world import OPENED
from tests.service_helpers import PUBLIC_URL, sid, twilio_post
from tests.test_dispatch import LATER, provider
from tests.test_manager_cases import _resolve, world
from tests.test_planning import outbox, plan

WINDOW = timedelta(hours=72)
NOW = datetime.now(UTC) - timedelta(minutes=1)
CALL = sid("CA", "one-phone")


def opt(con, subscriber, channel, event="opt_out", at="2026-01-01", key=None):
    con.execute(
        "INSERT INTO opt_outs VALUES (?, ?, ?, ?, ?, ?)",
        [subscriber, channel, event, at, f"{channel}_reply", key or f"{subscriber}-{at}"],
    )


def test_planning_treats_the_phone_as_one_consent_and_email_as_its_own(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None)  # texted STOP: no call either
    add_subscriber(con, "S2")  # pressed 9 on a call: no text, email still fine
    add_subscriber(con, "S3")  # unsubscribed from email: texts still fine
    add_subscriber(con, "S4", email=None)  # STOP, then START by text: calls and texts again
    opt(con, "S1", "sms")
    opt(con, "S2", "voice")
    opt(con, "S3", "email")
    opt(con, "S4", "voice")
    opt(con, "S4", "sms", "opt_in", at="2026-02-01")
    plan(con, settings)  # the birthday's first round: sms, then email, then voice
    got = {k: v[:3] for k, v in outbox(con).items()}
    assert got == {
        "S1": ("suppressed", "opted_out", None),
        "S2": ("queued", None, "email"),
        "S3": ("queued", None, "sms"),
        "S4": ("queued", None, "sms"),
    }


def test_a_text_opt_out_after_planning_stops_the_call(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None, sms_consent=False)  # reached by call only
    plan(con, settings)
    assert outbox(con)["S1"][:3] == ("queued", None, "voice")
    opt(con, "S1", "sms", at="2026-06-14")
    stopped_at_send(con, settings, "S1")


def stopped_at_send(con, settings, subscriber):
    """Dispatch sends nothing: ``subscriber``'s one queued action is suppressed as opted out."""
    sandbox = provider(settings)
    figures = dispatch(con, sandbox, now=LATER)
    assert figures.suppressed_at_send == 1 and not sandbox.handed
    assert outbox(con)[subscriber][:2] == ("suppressed", "opted_out")


def test_a_td_that_arrives_mid_run_stops_the_next_batchs_call(con, settings):
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    phones = {"+8613800000001", "+8613800000002"}
    for k in (1, 2):
        add_subscriber(con, f"S{k}", email=None, sms_consent=False)
    plan(con, settings)
    # each customer was texted a survey before (so the TD is theirs), and is now to be called
    for k in (1, 2):
        con.execute(
            "INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,"
            " subscriber_id, occasion, round, store_id, tier, locale, channel, recipient,"
            " body, survey, status, scheduled_at, created_at, sent_at, updated_at, sender)"
            " VALUES (?, ?, 'old', 'tenure', ?, 'occ', 1, 'ST1', 'standard', 'zh-CN', 'sms',"
            " ?, 'hi', true, 'sent', ?, ?, ?, ?, '+10000000000')",
            [f"OLD{k}", f"old-{k}", f"S{k}", f"+86138{k:08d}", *[LATER - timedelta(days=1)] * 4],
        )

    class TdArrives(SandboxProvider):
        """While the first call goes, the other customer texts TD."""

        def send(self, messages):
            results = super().send(messages)
            [other] = phones - {m.recipient for m in messages}
            td = {"MessageSid": "SM" + "c" * 32, "From": other, "To": "+10000000000", "Body": "TD"}
            inbox.put("sms", td["MessageSid"], LATER - timedelta(seconds=1), td)
            return results

    figures = dispatch(
        con,
        TdArrives(settings.sandbox_path, inbox),
        now=LATER,
        batch_size=1,
        refresh=lambda: collect(con, inbox, reply_window=WINDOW),
    )
    assert figures.sent == {"voice": 1} and figures.suppressed_at_send == 1


def test_a_key_press_opt_out_stops_the_follow_up_text(con, settings):
    world(con, settings)
    opt(con, "S1", "voice", at=OPENED)  # case E1 came from an SMS rating
    _resolve(con, "E1", OPENED + timedelta(hours=1))
    assert plan_follow_ups(con, settings, OPENED + timedelta(hours=1)) == 0
    note = con.execute("SELECT note FROM case_events WHERE evaluation_id = 'E1'").fetchone()[0]
    assert note == "not asked again: opted out of sms"


def test_the_ivr_offers_a_key_to_opt_out_and_pressing_it_opts_out_at_once(service, con):
    client, inbox, _ = service
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "V1", "S1", channel="voice", recipient="+8613800000001", sent_at=NOW)
    offers = {"zh-CN": "请按9", "en": "press 9"}
    for locale, offer in offers.items():
        path = "/webhooks/twilio/voice/V1"
        signed = f"{PUBLIC_URL}{path}?locale={locale}"
        prompt = client.post(
            f"{path}?locale={locale}", **twilio_post(path, {"CallSid": CALL}, signed_url=signed)
        ).text
        gather = prompt.split("<Gather")[1].split("</Gather>")[0]
        assert offer in gather, prompt  # offered while the keypress is listened for
    path = "/webhooks/twilio/voice/V1/gather"
    pressed = client.post(
        f"{path}?locale=en",
        **twilio_post(
            path, {"CallSid": CALL, "Digits": "9"}, signed_url=f"{PUBLIC_URL}{path}?locale=en"
        ),
    ).text
    assert "no more calls" in pressed and "rating" not in pressed
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT action_id, intent FROM evaluations").fetchall() == [
        ("V1", "opt_out")
    ]
    opted = con.execute("SELECT subscriber_id, channel FROM active_opt_outs ORDER BY ALL")
    assert opted.fetchall() == [("S1", "sms"), ("S1", "voice")]


def test_every_call_offers_the_opt_out_key(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None, sms_consent=False)
    add_subscriber(con, "S2", email=None, sms_consent=False, locale="en", phone="+12125550002")
    plan(con, settings)
    bodies = dict(con.execute("SELECT subscriber_id, body FROM care_actions").fetchall())
    assert "请按9" in bodies["S1"] and "press 9" in bodies["S2"]


def stop_from(inbox, number, body="STOP", at=None):
    """A text from ``number`` as the Twilio webhook lands it."""
    message = {"MessageSid": sid("SM", f"{number}{body}{at}"), "From": number,
               "To": "+10000000000", "Body": body}  # fmt: skip
    inbox.put("sms", message["MessageSid"], at or LATER - timedelta(days=2), message)


SHARED = "+8613800000001"  # S1's, and S9's: one number on two records


def test_a_stop_from_a_number_stops_every_record_that_holds_it(con, settings):
    """A STOP reached the subscriber its survey had gone to, and the other record with the same
    number (a duplicate, a family's contact number) was still texted and called: the FCC's
    revocation, and 退订, are the number's."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None)
    add_subscriber(con, "S9", email=None, phone=SHARED)
    add_subscriber(con, "S2", email=None)  # another number: texted as ever
    add_action(con, "OLD1", "S1", recipient=SHARED, sent_at=LATER - timedelta(days=3))
    stop_from(inbox, SHARED)
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT subscriber_id FROM active_opt_outs").fetchall() == [
        ("S1",),
        ("S1",),
    ]  # the reply's subscriber, on sms and voice, as before
    plan(con, settings)
    got = {k: v[:2] for k, v in outbox(con).items()}
    assert got == {
        "S1": ("suppressed", "opted_out"),
        "S9": ("suppressed", "opted_out"),
        "S2": ("queued", None),
    }


def test_a_number_that_stopped_after_planning_is_not_texted_on_another_record(con, settings):
    """The STOP answers S1's survey and comes after S9's care was planned: dispatch's check
    before each batch stops it, though S9 never opted out."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None, birthday=date(1990, 1, 1))
    add_subscriber(con, "S9", email=None, phone=SHARED)
    add_action(con, "OLD1", "S1", recipient=SHARED, sent_at=LATER - timedelta(days=4))
    plan(con, settings)
    con.execute(
        "UPDATE care_actions SET created_at = ? WHERE subscriber_id = 'S9'",
        [LATER - timedelta(days=3)],
    )
    assert outbox(con)["S9"][:2] == ("queued", None)
    stop_from(inbox, SHARED, "退订", at=LATER - timedelta(days=2))
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT DISTINCT subscriber_id FROM active_opt_outs").fetchall() == [("S1",)]
    stopped_at_send(con, settings, "S9")


def test_start_from_the_number_gives_it_back_and_the_latest_word_decides(con, settings):
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S9", email=None, phone=SHARED)
    stop_from(inbox, SHARED, at=LATER - timedelta(days=3))
    stop_from(inbox, SHARED, "START", at=LATER - timedelta(days=2))
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT * FROM active_phone_opt_outs").fetchall() == []
    plan(con, settings)
    assert outbox(con)["S9"][:2] == ("queued", None)


def test_a_provider_that_says_the_number_opted_out_stops_its_other_records(con, settings):
    from campaigns.channels.base import SendResult

    add_store(con)
    add_subscriber(con, "S1", email=None)
    plan(con, settings)

    class Refuses(SandboxProvider):
        def send(self, messages):  # Twilio's 21610: the recipient replied STOP to us
            return [
                SendResult(
                    m.action_id, error_code="21610", error="unsubscribed recipient", opted_out=True
                )
                for m in messages
            ]

    dispatch(con, Refuses(settings.sandbox_path, Inbox(settings.inbox_path)), now=LATER)
    assert con.execute("SELECT phone FROM active_phone_opt_outs").fetchall() == [(SHARED,)]
    add_subscriber(con, "S9", email=None, phone=SHARED, birthday=date(1990, 6, 16))
    plan(con, settings, as_of=date(2026, 6, 16))
    assert outbox(con)["S9"][:2] == ("suppressed", "opted_out")


def test_a_number_given_to_a_new_customer_after_its_stop_is_theirs_to_be_texted(con, settings):
    """Numbers are given again to new customers once their holders leave: the STOP the old
    holder sent is not the new one's, whose consent came when they joined."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None, left_on=date(2025, 9, 1))  # the old holder
    add_action(con, "OLD1", "S1", recipient=SHARED, sent_at=datetime(2025, 6, 1, tzinfo=UTC))
    stop_from(inbox, SHARED, at=datetime(2025, 6, 2, tzinfo=UTC))
    collect(con, inbox, reply_window=WINDOW)
    add_subscriber(con, "S9", email=None, phone=SHARED, joined_on=date(2026, 1, 10))
    add_subscriber(con, "S8", email=None, phone=SHARED, joined_on=date(2025, 1, 10))
    plan(con, settings)
    got = {k: v[:2] for k, v in outbox(con).items() if k != "S1"}
    assert got == {"S9": ("queued", None), "S8": ("suppressed", "opted_out")}
    dispatch(con, provider(settings), now=LATER)
    assert outbox(con)["S9"][0] == "sent"


def test_start_from_the_number_frees_the_record_its_stop_came_to(con, settings):
    """S1's survey got the STOP; S9's, on the same number, the START: the number was free
    again, yet S1 stayed opted out and was never texted."""
    inbox = Inbox(settings.inbox_path)
    add_store(con)
    add_subscriber(con, "S1", email=None)
    add_subscriber(con, "S9", email=None, phone=SHARED)
    add_action(con, "OLD1", "S1", recipient=SHARED, sent_at=LATER - timedelta(days=12))
    stop_from(inbox, SHARED, at=LATER - timedelta(days=11))
    collect(con, inbox, reply_window=WINDOW)
    add_action(con, "OLD9", "S9", recipient=SHARED, sent_at=LATER - timedelta(days=10))
    stop_from(inbox, SHARED, "START", at=LATER - timedelta(days=9))
    collect(con, inbox, reply_window=WINDOW)
    assert con.execute("SELECT * FROM active_opt_outs").fetchall() == []
    plan(con, settings)
    got = {k: v[:2] for k, v in outbox(con).items()}
    assert got["S1"] == ("queued", None)
    assert got["S9"] == ("queued", None)  # the number is asked once a plan: S9 without it
    asked = dict(
        con.execute("SELECT subscriber_id, survey FROM care_actions WHERE run_id = 'r1'").fetchall()
    )
    assert asked == {"S1": True, "S9": False}
