from datetime import UTC, datetime, timedelta

import pytest

from cases.collect import collect
from core.tokens import RATING_LINK_LIFETIME
from feedback.ingest import LATE_LOOKBACK
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)
PHONE = "+8613800000001"


@pytest.fixture
def inbox(inbox_url):
    return Inbox(inbox_url)


@pytest.fixture
def world(con):
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2")
    return con


def sms(inbox, sid, sender, body, at):
    inbox.put(
        "sms", sid, at, {"MessageSid": sid, "From": sender, "To": "+10000000000", "Body": body}
    )


def evaluations(con):
    return con.execute(
        "SELECT dedupe_key, action_id, subscriber_id, intent, score, comment, "
        "attribution FROM evaluations ORDER BY received_at"
    ).fetchall()


def test_sms_reply_is_scored_and_attributed(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "2 排队太久了", T0 + timedelta(minutes=20))
    figures = collect(world, inbox, reply_window=WINDOW)
    assert evaluations(world) == [("sms:SM1", "A1", "S1", "rating", 2, "排队太久了", "matched")]
    assert figures.replies == {"matched": 1}
    assert world.execute("SELECT action_id, score FROM action_ratings").fetchall() == [("A1", 2)]


def test_overlapping_campaigns_attribute_to_the_latest_survey_before_the_reply(world, inbox):
    add_action(world, "B", "S1", campaign="birthday", recipient=PHONE, sent_at=T0)
    add_action(
        world, "T", "S1", campaign="tenure", recipient=PHONE, sent_at=T0 + timedelta(hours=5)
    )
    sms(inbox, "SM1", PHONE, "4", T0 + timedelta(hours=1))
    sms(inbox, "SM2", PHONE, "5", T0 + timedelta(hours=6))
    collect(world, inbox, reply_window=WINDOW)
    rows = world.execute(
        "SELECT dedupe_key, campaign_id, action_id FROM evaluations ORDER BY 1"
    ).fetchall()
    assert rows == [("sms:SM1", "birthday", "B"), ("sms:SM2", "tenure", "T")]


def test_late_unknown_and_unsolicited_replies_are_kept(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "5", T0 + timedelta(hours=80))
    sms(inbox, "SM2", "+8613999999999", "5", T0)
    sms(inbox, "SM3", "+8613800000002", "3", T0)  # S2, who was never asked
    figures = collect(world, inbox, reply_window=WINDOW)
    got = {r[0]: (r[1], r[2], r[6]) for r in evaluations(world)}
    assert got == {
        "sms:SM1": (None, "S1", "late"),
        "sms:SM2": (None, None, "unknown_sender"),
        "sms:SM3": (None, "S2", "no_open_survey"),
    }
    assert figures.replies == {"late": 1, "unknown_sender": 1, "no_open_survey": 1}
    assert world.execute("SELECT count(*) FROM action_ratings").fetchone() == (0,)


def test_late_means_within_a_month_of_the_window_closing(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    after_window = T0 + WINDOW
    sms(inbox, "SM1", PHONE, "5", after_window + LATE_LOOKBACK - timedelta(hours=1))
    sms(inbox, "SM2", PHONE, "4", after_window + LATE_LOOKBACK + timedelta(hours=1))
    collect(world, inbox, reply_window=WINDOW)
    got = {r[0]: (r[1], r[2], r[6]) for r in evaluations(world)}
    assert got == {"sms:SM1": (None, "S1", "late"), "sms:SM2": (None, "S1", "no_open_survey")}


def test_a_status_finds_its_send_whenever_it_was_claimed(world, inbox):
    at = T0 + timedelta(days=60)
    claims = {"OLD": T0, "NEW": at - timedelta(hours=1), "NONE": None}  # beyond RECENT_SENDS
    for action, claimed in claims.items():
        add_action(world, action, "S1", recipient=PHONE, sent_at=T0, provider_id=f"SM-{action}")
        world.execute(
            "UPDATE care_actions SET claimed_at = ? WHERE action_id = ?", [claimed, action]
        )
        inbox.put(
            "status",
            f"SM-{action}:delivered",
            at,
            {"MessageSid": f"SM-{action}", "MessageStatus": "delivered"},
        )
    collect(world, inbox, reply_window=WINDOW)
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {"OLD": "delivered", "NEW": "delivered", "NONE": "delivered"}
    events = world.execute("SELECT action_id FROM delivery_events ORDER BY action_id").fetchall()
    assert events == [("NEW",), ("NONE",), ("OLD",)]


def test_duplicates_count_once_even_when_the_inbox_is_replayed(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "4", T0 + timedelta(minutes=5))
    assert inbox.put("sms", "SM1", T0, {"From": PHONE, "Body": "4"}) is False  # provider retry
    collect(world, inbox, reply_window=WINDOW)
    world.execute("DELETE FROM ingest_state")  # as if the flow crashed before its watermark
    again = collect(world, inbox, reply_window=WINDOW)
    assert again.duplicates == 1 and again.drained == 1
    assert world.execute("SELECT count(*) FROM evaluations").fetchone() == (1,)


def test_an_item_read_again_from_a_new_inbox_counts_once_however_old(world, inbox, tmp_path):
    """A new inbox is read from its start: an item it holds again (moved with the inbox)
    arrived when it first did, months ago, and lands once."""
    long_ago = T0 - timedelta(days=100)
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=long_ago)
    sms(inbox, "SM1", PHONE, "4", long_ago + timedelta(minutes=5))
    sms(inbox, "SM2", PHONE, "5", T0)  # recent traffic in the log as well
    first = collect(world, inbox, reply_window=WINDOW)
    moved = Inbox(tmp_path / "moved.sqlite")
    sms(moved, "SM1", PHONE, "4", long_ago + timedelta(minutes=5))
    again = collect(world, moved, reply_window=WINDOW)
    assert (first.drained, first.duplicates) == (2, 0)
    assert (again.drained, again.duplicates) == (1, 1)
    assert world.execute("SELECT count(*) FROM inbound_messages").fetchone() == (2,)


def test_a_providers_retry_after_the_inbox_let_the_first_go_lands_once(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "4", T0 + timedelta(minutes=5))
    collect(world, inbox, reply_window=WINDOW)
    assert inbox.prune(10**9, T0 + timedelta(days=1)) == 1
    sms(inbox, "SM1", PHONE, "4", T0 + timedelta(days=2, hours=23))  # SendGrid retries 72 h
    again = collect(world, inbox, reply_window=WINDOW)
    assert (again.drained, again.duplicates) == (1, 1)
    assert world.execute("SELECT count(*) FROM inbound_messages").fetchone() == (1,)
    assert len(evaluations(world)) == 1


@pytest.mark.parametrize("after", [timedelta(days=4), RATING_LINK_LIFETIME])
def test_a_rating_form_posted_again_while_its_link_is_valid_counts_once(world, inbox, after):
    """The inbox let the first post go and the log's look for repeats (3 days) misses it:
    the evaluations still keep one row for the rating, and its case's rating is the first."""
    add_action(world, "E1", "S1", channel="email", recipient="c1@example.com", sent_at=T0)
    rating = {"action_id": "E1", "score": 2, "comment": "slow"}
    first = T0 + timedelta(minutes=30)
    inbox.put("email_rating", "E1:2:d1", first, rating)
    collect(world, inbox, reply_window=WINDOW)
    assert inbox.prune(10**9, first + timedelta(days=1)) == 1
    inbox.put("sms", "SMx", first + after - timedelta(minutes=1), {"From": PHONE, "Body": "hi"})
    inbox.put("email_rating", "E1:2:d1", first + after, rating)  # the same form, again
    again = collect(world, inbox, reply_window=WINDOW)
    assert (again.drained, again.duplicates) == (2, 0)  # landed: older than the log's look
    assert world.execute(
        "SELECT dedupe_key, count(*) FROM evaluations GROUP BY ALL ORDER BY 1"
    ).fetchall() == [("email_rating:E1:2:d1", 1), ("sms:SMx", 1)]
    assert world.execute("SELECT received_at FROM latest_ratings").fetchall() == [(first,)]


def test_stop_opts_out_and_start_opts_back_in(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "退订", T0 + timedelta(minutes=1))
    figures = collect(world, inbox, reply_window=WINDOW)
    assert figures.opt_outs == 1
    assert world.execute(
        "SELECT subscriber_id, channel FROM active_opt_outs ORDER BY ALL"
    ).fetchall() == [("S1", "sms"), ("S1", "voice")]  # one phone, one consent
    sms(inbox, "SM2", PHONE, "START", T0 + timedelta(minutes=9))
    collect(world, inbox, reply_window=WINDOW)
    assert world.execute("SELECT count(*) FROM active_opt_outs").fetchone() == (0,)


def test_ivr_and_email_replies_carry_their_action(world, inbox):
    add_action(world, "V1", "S1", channel="voice", recipient=PHONE, sent_at=T0)
    add_action(world, "V2", "S2", channel="voice", recipient="+8613800000002", sent_at=T0)
    add_action(world, "E1", "S2", channel="email", recipient="c2@example.com", sent_at=T0)
    inbox.put("ivr", "CA1:gather", T0 + timedelta(seconds=40), {"action_id": "V1", "Digits": "4"})
    inbox.put("ivr", "CA2:gather", T0 + timedelta(seconds=40), {"action_id": "V2", "Digits": "0"})
    inbox.put(
        "email_rating",
        "rating:E1",
        T0 + timedelta(hours=2),
        {"action_id": "E1", "score": 1, "comment": "never again"},
    )
    collect(world, inbox, reply_window=WINDOW)
    got = {r[1]: (r[3], r[4], r[5]) for r in evaluations(world)}
    assert got == {
        "V1": ("rating", 4, None),
        "V2": ("unknown", None, None),
        "E1": ("rating", 1, "never again"),
    }


def test_status_events_never_go_backwards(world, inbox):
    add_action(world, "A1", "S1", recipient=PHONE, sent_at=T0, provider_id="SM-A1")
    inbox.put(
        "status",
        "SM-A1:delivered",
        T0 + timedelta(seconds=5),
        {"provider_id": "SM-A1", "status": "delivered"},
    )
    inbox.put(
        "status",
        "SM-A1:sent",
        T0 + timedelta(seconds=2),
        {"provider_id": "SM-A1", "status": "sent"},
    )  # arrives late, out of order
    figures = collect(world, inbox, reply_window=WINDOW)
    assert figures.status_events == 2
    assert world.execute("SELECT status FROM care_actions").fetchone() == ("delivered",)
    assert world.execute(
        "SELECT count(*) FROM delivery_events WHERE action_id = 'A1'"
    ).fetchone() == (2,)


def test_a_late_accepted_event_never_opens_an_action_that_was_not_sent(world, inbox):
    """Twilio's accepted/queued/scheduled callbacks map to 'queued': arriving late (a first
    attempt's, after the action expired), they left it queued again for the next run to send,
    even to a held-out or opted-out customer; a receipt saying 'sending' would have opened it
    too. What says it was sent still records it."""
    settled = ("expired", "suppressed", "held_out")
    for status in settled:
        add_action(world, f"A-{status}", "S1", recipient=PHONE, sent_at=T0, status=status)
        for event in ("accepted", "queued", "scheduled"):
            inbox.put(
                "status",
                f"SM-{status}:{event}",
                T0 + timedelta(minutes=1),
                {"MessageSid": f"SM-{status}", "MessageStatus": event, "action_id": f"A-{status}"},
            )
        for said in ("sending", "unconfirmed", "queued"):  # a receipt shaped as the sandbox's
            inbox.put(
                "status",
                f"X-{status}:{said}",
                T0 + timedelta(minutes=1),
                {"provider_id": f"X-{status}", "status": said, "action_id": f"A-{status}"},
            )
    add_action(world, "A-late", "S1", recipient=PHONE, sent_at=T0, status="expired")
    world.execute("UPDATE care_actions SET attempts = 1 WHERE action_id = 'A-late'")  # retried
    inbox.put(
        "status",
        "SM-late:delivered",
        T0 + timedelta(minutes=2),
        {"MessageSid": "SM-late", "MessageStatus": "delivered", "action_id": "A-late"},
    )
    collect(world, inbox, reply_window=WINDOW)
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {**{f"A-{s}": s for s in settled}, "A-late": "delivered"}


def test_no_event_makes_a_held_out_customer_treated(world, inbox):
    """A held-out action is never handed over, so an event naming it (a stray callback, a
    receipt for another action's id) is no send: made 'sent', its customer would count among
    the treated in the lift, which reads the group from the status."""
    add_action(world, "A-held", "S1", recipient=PHONE, sent_at=T0, status="held_out")
    add_action(world, "A-sent", "S2", recipient=PHONE, sent_at=T0, status="sending")
    for action, event in (("A-held", "sent"), ("A-held", "delivered"), ("A-sent", "delivered")):
        inbox.put(
            "status",
            f"SM-{action}:{event}",
            T0 + timedelta(minutes=1),
            {"MessageSid": f"SM-{action}", "MessageStatus": event, "action_id": action},
        )
    collect(world, inbox, reply_window=WINDOW)
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {"A-held": "held_out", "A-sent": "delivered"}
    assert world.execute(  # the event itself is kept, as every event is
        "SELECT count(*) FROM delivery_events WHERE action_id = 'A-held'"
    ).fetchone() == (2,)


def test_no_event_moves_an_action_settled_before_any_attempt(world, inbox):
    """Suppressed or expired by its plan or its screen, an action was never handed over: a
    stray event naming it once made it delivered, so a capped customer counted as sent, a
    February action as a December survey, and the customer's next reply landed on it (its
    case on another store's list). One that was attempted (a retry the provider took after
    all) still takes what the event says."""
    settled = [("capped", "suppressed", 0), ("stale", "expired", 0), ("retried", "expired", 1)]
    for name, status, attempts in settled:
        add_action(world, name, "S1", recipient=PHONE, sent_at=T0, status=status)
        world.execute("UPDATE care_actions SET attempts = ? WHERE action_id = ?", [attempts, name])
        inbox.put(
            "status",
            f"SM-{name}:delivered",
            T0 + timedelta(minutes=1),
            {"MessageSid": f"SM-{name}", "MessageStatus": "delivered", "action_id": name},
        )
    collect(world, inbox, reply_window=WINDOW)
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {"capped": "suppressed", "retried": "delivered", "stale": "expired"}


def test_a_claiming_providers_event_never_settles_an_action_never_attempted(world, inbox):
    """Twilio's and SendGrid's sends are claimed before they leave, so their event naming an
    action still queued, never attempted, is stray (another deployment's callback, a replay):
    it once made the action delivered, and it was never sent. The sandbox sends inside the
    transaction that records the send, so its receipt for such an action is a killed run's
    send, and settles it."""
    for name in ("by-twilio", "by-sendgrid", "by-sandbox"):
        add_action(world, name, "S1", recipient=PHONE, sent_at=T0, status="queued")
    events = [
        ("SM-t:delivered", {"MessageSid": "SM-t", "MessageStatus": "delivered",
                            "action_id": "by-twilio"}),
        ("sg-1", {"event": "delivered", "sg_message_id": "m1.x", "action_id": "by-sendgrid",
                  "timestamp": int(T0.timestamp())}),
        ("SB-1:delivered", {"provider_id": "SB-1", "action_id": "by-sandbox",
                            "status": "delivered"}),
    ]  # fmt: skip
    for key, payload in events:
        inbox.put("status", key, T0 + timedelta(minutes=1), payload)
    collect(world, inbox, reply_window=WINDOW)
    got = world.execute("SELECT action_id, status, attempts FROM care_actions ORDER BY 1")
    assert got.fetchall() == [
        ("by-sandbox", "delivered", 1),
        ("by-sendgrid", "queued", 0),
        ("by-twilio", "queued", 0),
    ]


def test_email_unsubscribe_opts_out_of_email(world, inbox):
    add_action(world, "E1", "S2", channel="email", recipient="c2@example.com", sent_at=T0)
    inbox.put("unsubscribe", "E1", T0 + timedelta(hours=1), {"action_id": "E1"})
    figures = collect(world, inbox, reply_window=WINDOW)
    assert figures.opt_outs == 1
    assert world.execute("SELECT subscriber_id, channel FROM active_opt_outs").fetchall() == [
        ("S2", "email")
    ]


def test_twilio_and_sendgrid_events_map_onto_statuses(world, inbox):
    add_action(world, "M1", "S1", recipient=PHONE, sent_at=T0, provider_id="SM1")
    add_action(world, "C1", "S1", channel="voice", recipient=PHONE, sent_at=T0, provider_id="CA1")
    add_action(
        world,
        "E1",
        "S2",
        channel="email",
        recipient="c2@example.com",
        sent_at=T0,
        provider_id="batch",
    )
    add_action(
        world,
        "E2",
        "S2",
        channel="email",
        recipient="c2@example.com",
        sent_at=T0,
        provider_id="batch",
    )
    at = T0 + timedelta(seconds=5)
    inbox.put(
        "status",
        "SM1:undelivered",
        at,
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"},
    )
    inbox.put("status", "CA1:no-answer", at, {"CallSid": "CA1", "CallStatus": "no-answer"})
    for n, (action, event) in enumerate(
        [
            ("E1", "processed"),
            ("E1", "bounce"),
            ("E2", "delivered"),
            ("E2", "open"),
            ("E2", "unsubscribe"),
        ]
    ):
        inbox.put(
            "status",
            f"sg{n}",
            at,
            {
                "event": event,
                "sg_event_id": f"sg{n}",
                "sg_message_id": "batch.filter0",
                "action_id": action,
            },
        )
    collect(world, inbox, reply_window=WINDOW)
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {"M1": "undelivered", "C1": "undelivered", "E1": "bounced", "E2": "delivered"}
    assert world.execute(
        "SELECT error_code FROM care_actions WHERE action_id = 'M1'"
    ).fetchone() == ("30003",)
    assert world.execute("SELECT subscriber_id, channel FROM active_opt_outs").fetchall() == [
        ("S2", "email")
    ]
    assert world.execute("SELECT count(*) FROM delivery_events").fetchone() == (7,)


def test_a_reply_belongs_to_the_survey_from_the_number_it_answers(world, inbox):
    add_action(
        world, "B", "S1", campaign="birthday", recipient=PHONE, sent_at=T0, sender="+15550000001"
    )
    add_action(
        world,
        "T",
        "S1",
        campaign="tenure",
        recipient=PHONE,
        sent_at=T0 + timedelta(hours=1),
        sender="+15550000002",
    )
    later = T0 + timedelta(hours=2)
    for sid, to, body in [
        ("SM1", "+15550000001", "2"),
        ("SM2", "+15550000002", "5"),
        ("SM3", "+15550000003", "4"),
    ]:
        inbox.put("sms", sid, later, {"MessageSid": sid, "From": PHONE, "To": to, "Body": body})
    collect(world, inbox, reply_window=WINDOW)
    rows = world.execute(
        "SELECT dedupe_key, action_id, attribution FROM evaluations ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("sms:SM1", "B", "matched"),
        ("sms:SM2", "T", "matched"),
        ("sms:SM3", None, "no_open_survey"),
    ]


def test_a_drain_stops_at_what_was_there_when_it_began(inbox):
    for n in range(3):
        sms(inbox, f"SM{n}", PHONE, "5", T0)
    seen = []
    for batch in inbox.after(0, limit=1):
        seen += [i.dedupe_key for i in batch]
        sms(inbox, f"SMlate{len(seen)}", PHONE, "4", T0)  # a service writing all the while
    assert seen == ["SM0", "SM1", "SM2"]
    assert [i.dedupe_key for b in inbox.after(3) for i in b] == ["SMlate1", "SMlate2", "SMlate3"]


def test_prune_deletes_only_what_collect_took_and_is_old(world, inbox):
    from feedback.ingest import watermark

    for n in range(3):
        sms(inbox, f"SMold{n}", PHONE, "5", T0 - timedelta(days=40))
    sms(inbox, "SMnew", PHONE, "4", T0)
    collect(world, inbox, reply_window=WINDOW)
    sms(inbox, "SMlate", PHONE, "3", T0 - timedelta(days=40))  # old, but not collected yet
    pruned = inbox.prune(watermark(world, inbox), T0 - timedelta(days=30), batch=2)
    assert pruned == 3
    assert sorted(i.dedupe_key for b in inbox.after(0) for i in b) == ["SMlate", "SMnew"]
    assert collect(world, inbox, reply_window=WINDOW).drained == 1  # the late one, once
    assert world.execute("SELECT count(*) FROM inbound_messages").fetchone()[0] == 5


def test_only_receipts_are_no_news_to_a_sending_run(world, inbox):
    from cases.collect import RECEIPTS

    def news(since=0):
        return inbox.news_between(since, f"NOT ({RECEIPTS})")

    receipt = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    inbox.put("status", "SM1:delivered", T0, receipt)
    assert news() == (False, 1)
    event = {"event": "unsubscribe", "sg_event_id": "sg1", "action_id": "E1"}
    inbox.put("status", "sg1", T0, event)  # SendGrid's: it may be an unsubscribe
    assert news() == (True, 2) and news(2) == (False, 2)
    sms(inbox, "SM9", PHONE, "TD", T0)
    assert news(2) == (True, 3)


def test_a_stop_to_an_old_survey_reaches_the_customer_it_was_sent_to(world, inbox):
    """Two records share a phone (a family line); the survey went to S3, and its STOP comes
    long after the weeks a reply's survey is first looked for among."""
    add_subscriber(world, "S3", phone=PHONE)  # S1 has PHONE too
    add_action(world, "A3", "S3", recipient=PHONE, sent_at=T0)
    sms(inbox, "SM1", PHONE, "STOP", T0 + WINDOW + LATE_LOOKBACK + timedelta(days=5))
    sms(inbox, "SM2", PHONE, "4", T0 + WINDOW + LATE_LOOKBACK + timedelta(days=5))
    collect(world, inbox, reply_window=WINDOW)
    opted = world.execute("SELECT subscriber_id FROM opt_outs WHERE event = 'opt_out'")
    assert opted.fetchall() == [("S3",)]
    got = {r[0]: (r[2], r[6]) for r in evaluations(world)}
    assert got == {"sms:SM1": ("S3", "no_open_survey"), "sms:SM2": ("S1", "no_open_survey")}


def test_an_event_with_odd_values_names_nothing_and_stops_nothing(world, inbox):
    """A signed SendGrid batch may carry another sender's custom arguments: an action id that
    is a number, a list or an object, a message id that is not text, a status that is a list.
    Such an event once stopped every collect (and every dispatch, which collects first), so no
    reply or opt-out behind it was ever taken in."""
    add_action(world, "12345", "S1", channel="email", recipient="c1@example.com", sent_at=T0)
    add_action(world, "A1", "S2", recipient="+8613800000002", sent_at=T0)
    odd = [
        {"event": "delivered", "action_id": 12345, "sg_message_id": "m1.x", "sg_event_id": "1"},
        {"event": "delivered", "action_id": {"id": "A1"}, "sg_message_id": ["m2"]},
        {"event": "bounce", "action_id": ["A1"], "timestamp": "yesterday", "careloop_sent": "x"},
        {"provider_id": ["X"], "action_id": "A1", "status": ["delivered"]},
        {"event": "delivered", "action_id": True, "careloop_sent": "not a time"},
        {"event": "open", "action_id": "A9", "careloop_sent": "99999999999"},  # year 5138
        # kept by the service with its kind empty: no proof that an email left
        {"event": None, "action_id": "A1", "status": "delivered", "sg_message_id": "m3.x"},
    ]
    for n, payload in enumerate(odd):
        inbox.put("status", f"odd-{n}", T0 + timedelta(minutes=1), payload)
    sms(inbox, "SM-stop", "+8613800000002", "STOP", T0 + timedelta(minutes=2))
    figures = collect(world, inbox, reply_window=WINDOW)
    assert figures.status_events == len(odd) and figures.opt_outs == 1
    got = dict(world.execute("SELECT action_id, status FROM care_actions").fetchall())
    assert got == {"12345": "delivered", "A1": "sent"}  # the number named its action
    # and the send's check of email events reads past them
    evidence = inbox.email_evidence(["A1"], "careloop_sent")
    assert evidence.events == {} and evidence.newest_send is None


def test_a_key_pressed_on_a_call_that_asked_nothing_is_no_rating(world, inbox):
    """A household's second member is called with the care and no survey; the call still
    reads keys (9 opts out), and a 1 pressed on it was a matched rating of that call: a
    dissatisfied customer the survey never asked, counted and given a case."""
    add_action(world, "V1", "S1", channel="voice", recipient=PHONE, sent_at=T0)
    world.execute("UPDATE care_actions SET survey = false WHERE action_id = 'V1'")
    inbox.put("ivr", "CA1:gather", T0 + timedelta(seconds=40), {"action_id": "V1", "Digits": "1"})
    inbox.put("ivr", "CA1:again", T0 + timedelta(seconds=50), {"action_id": "V1", "Digits": "9"})
    collect(world, inbox, reply_window=WINDOW)
    got = world.execute(
        "SELECT intent, attribution FROM evaluations ORDER BY received_at"
    ).fetchall()
    assert got == [("rating", "no_open_survey"), ("opt_out", "matched")]
