"""The feedback service: verified, durable, idempotent, and understood."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from cases.collect import collect
from core.settings import load_settings
from core.tokens import LinkToken, rating_links, sign, unsubscribe_link
from feedback.statuses import normalize
from tests.factories import add_action, add_store, add_subscriber
from tests.service_helpers import (
    AUTH_TOKEN,
    PUBLIC_URL,
    events_body,
    sid,
    sms_form,
    twilio_post,
)

PHONE = "+8613800000001"


def items(inbox, kind=None):
    return [i for batch in inbox.after(0) for i in batch if kind is None or i.kind == kind]


def test_an_sms_reply_is_stored_then_thanked_and_a_retry_counts_once(service):
    client, inbox, _ = service
    request = twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", 1), PHONE, "5"))
    first = client.post("/webhooks/twilio/sms", **request)
    again = client.post("/webhooks/twilio/sms", **request)
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"].startswith("application/xml")
    assert "<Message>感谢您的评价！</Message>" in first.text
    stored = items(inbox)
    assert [(i.kind, i.dedupe_key, i.payload["Body"]) for i in stored] == [
        ("sms", sid("SM", 1), "5")
    ]


@pytest.mark.parametrize("tamper", ["signature", "body", "url", "token"])
def test_forged_twilio_requests_get_403_and_are_stored_nowhere(service, tamper):
    client, inbox, _ = service
    form = sms_form(sid("SM", 1), PHONE, "5")
    request = twilio_post(
        "/webhooks/twilio/sms",
        form,
        token="other-token" if tamper == "token" else AUTH_TOKEN,
        signed_url=f"{PUBLIC_URL}/elsewhere" if tamper == "url" else None,
    )
    if tamper == "signature":
        request["headers"]["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    if tamper == "body":
        request["content"] = request["content"].replace("Body=5", "Body=1")
    assert client.post("/webhooks/twilio/sms", **request).status_code == 403
    assert items(inbox) == []


def test_unsigned_requests_get_403(service):
    client, inbox, _ = service
    assert client.post("/webhooks/twilio/status", content="MessageSid=SM1").status_code == 403
    assert items(inbox) == []


def test_replies_get_the_right_answer_and_one_clarifying_question(service):
    client, _, _ = service

    def reply(sid, body, sender=PHONE):
        request = twilio_post("/webhooks/twilio/sms", sms_form(sid, sender, body))
        return client.post("/webhooks/twilio/sms", **request).text

    assert "很抱歉让您失望了" in reply(sid("SM", 1), "2 排队太久了")
    assert "请回复数字1-5" in reply(sid("SM", 2), "什么意思")
    assert "<Message>" not in reply(sid("SM", 3), "还是不懂")  # at most one clarification
    assert "Please reply with a number" in reply(sid("SM", 4), "huh?", "+12125550123")
    assert "您已退订" in reply(sid("SM", 5), "TD")
    assert "<Message>" not in reply(sid("SM", 6), "STOP")  # Twilio answers STOP itself
    assert "回复1-5为服务打分" in reply(sid("SM", 7), "帮助")
    assert "<Response>" in reply(sid("SM", 8), "huh?", "+1212\x00555")  # PostgreSQL: no 500


def test_a_status_callback_whose_url_names_its_action_lands_with_it(service):
    """The send's callback URL names its action (Twilio signs the URL): the status carries it,
    and a callback to the plain URL (a send made before) lands without one."""
    client, inbox, _ = service
    for path, sid_n in (("/webhooks/twilio/status/ca_0123abcd", 7), ("/webhooks/twilio/status", 8)):
        form = {"MessageSid": sid("SM", sid_n), "MessageStatus": "sent", "AccountSid": "AC1"}
        assert client.post(path, **twilio_post(path, form)).status_code == 200
    forged = {"MessageSid": sid("SM", 6), "MessageStatus": "sent", "AccountSid": "AC1"}
    signed_elsewhere = twilio_post("/webhooks/twilio/status/ca_other", forged)
    assert client.post("/webhooks/twilio/status/ca_mine", **signed_elsewhere).status_code == 403
    landed = {i.dedupe_key: i.payload.get("action_id") for page in inbox.after(0) for i in page}
    assert landed == {f"{sid('SM', 7)}:sent": "ca_0123abcd", f"{sid('SM', 8)}:sent": None}


def test_status_callbacks_and_ivr_digits(service):
    client, inbox, _ = service
    status = {"MessageSid": sid("SM", 9), "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert (
        client.post(
            "/webhooks/twilio/status", **twilio_post("/webhooks/twilio/status", status)
        ).status_code
        == 200
    )
    path = "/webhooks/twilio/voice/ca_1/gather"
    answered = client.post(
        f"{path}?locale=zh-CN",
        **twilio_post(
            path,
            {"CallSid": sid("CA", 1), "Digits": "4"},
            signed_url=f"{PUBLIC_URL}{path}?locale=zh-CN",
        ),
    )
    assert answered.status_code == 200 and "谢谢您的评价" in answered.text
    missed = client.post(path, **twilio_post(path, {"CallSid": sid("CA", 2), "Digits": ""}))
    assert "We did not get a rating" in missed.text
    survey = client.post(
        "/webhooks/twilio/voice/ca_1",
        **twilio_post("/webhooks/twilio/voice/ca_1", {"CallSid": sid("CA", 1)}),
    )
    assert (
        'action="https://care.example.com/webhooks/twilio/voice/ca_1/gather?locale=en"'
        in survey.text
        and 'numDigits="1"' in survey.text
    )
    stored = {(i.kind, i.dedupe_key): i.payload for i in items(inbox)}
    assert stored[("status", f"{sid('SM', 9)}:delivered")]["MessageStatus"] == "delivered"
    assert stored[("ivr", f"{sid('CA', 1)}:gather")] | {} == {
        "CallSid": sid("CA", 1),
        "Digits": "4",
        "action_id": "ca_1",
    }
    assert ("ivr", f"{sid('CA', 2)}:gather") in stored


def test_sendgrid_batches_are_verified_deduplicated_and_replays_refused(service, signer):
    client, inbox, _ = service
    body = events_body(
        [
            {"event": "delivered", "sg_event_id": "ev1", "action_id": "ca_1"},
            {"event": "open", "sg_event_id": "ev2", "action_id": "ca_1"},
        ]
    )
    path = "/webhooks/sendgrid/events"
    assert client.post(path, content=body, headers=signer.headers(body)).status_code == 200
    assert client.post(path, content=body, headers=signer.headers(body)).status_code == 200
    assert sorted(i.dedupe_key for i in items(inbox)) == ["ev1", "ev2"]
    forged = body.replace("delivered", "bounce")
    assert client.post(path, content=forged, headers=signer.headers(body)).status_code == 403
    old = int((datetime.now(UTC) - timedelta(minutes=10)).timestamp())
    replay = events_body([{"event": "delivered", "sg_event_id": "ev3"}])
    assert client.post(path, content=replay, headers=signer.headers(replay, old)).status_code == 403
    assert client.post(path, content=replay, headers={}).status_code == 403
    assert len(items(inbox)) == 2


def test_another_senders_odd_events_lose_nothing_of_their_batch(service, signer):
    """A 3,000-character action id, a long event id or a NUL character made PostgreSQL refuse
    the whole batch (an index entry's limit, JSON text with no NUL): a 500, SendGrid retried
    it for 72 hours and dropped it, the customer's unsubscribe beside them lost with it."""
    client, inbox, _ = service
    odd = [
        {"event": "unsubscribe", "sg_event_id": "ev-unsub", "action_id": "ca_1"},
        {"event": "delivered", "sg_event_id": "ev-long-id", "action_id": "x" * 3000},
        {"event": "delivered", "sg_event_id": "e" * 3000, "action_id": "ca_2"},
        {"event": "bounce", "sg_event_id": "ev-nul", "action_id": "ca_3", "reason": "a\u0000b"},
        {"event": "open", "sg_event_id": "ev-obj", "action_id": {"id": "y" * 3000}},
    ]
    body = events_body(odd)
    path = "/webhooks/sendgrid/events"
    assert client.post(path, content=body, headers=signer.headers(body)).status_code == 200
    stored = {i.dedupe_key: i.payload for i in items(inbox)}
    assert len(stored) == 5 and stored["ev-unsub"]["action_id"] == "ca_1"
    assert (
        "action_id" not in stored["ev-long-id"]
        and len(stored["ev-long-id"]["action_id_given"]) == 3000
    )
    assert stored["ev-nul"]["reason"] == "a\ufffdb" and "action_id" not in stored["ev-obj"]
    assert [k for k in stored if len(k) > 200] == []


def test_a_sendgrid_event_without_its_kind_is_never_read_as_a_sandbox_receipt(service, signer):
    """An event with no 'event' (another sender's, a changed API) but a 'status' and an
    action id was read as the sandbox's receipt, which may settle an action never claimed:
    stored, it is SendGrid's, and changes no status."""
    client, inbox, _ = service
    bare = {"sg_event_id": "ev-bare", "action_id": "ca_9", "status": "delivered"}
    body = events_body([bare])
    path = "/webhooks/sendgrid/events"
    assert client.post(path, content=body, headers=signer.headers(body)).status_code == 200
    [item] = items(inbox)
    event = normalize(item.payload)
    assert event.claimed_first and event.status is None and event.action_id == "ca_9"


def test_rating_links_record_the_score_and_the_detail(service):
    client, inbox, settings = service
    links = rating_links(
        "ca_7", PUBLIC_URL, settings.link_secret.get_secret_value(), datetime.now(UTC)
    )
    path = links[2].removeprefix(PUBLIC_URL)
    page = client.get(path)
    assert page.status_code == 200 and "2 / 5" in page.text and "<form" in page.text
    assert client.head(path).status_code == 200 and items(inbox) == []  # a scanner: nothing
    detail = client.post(
        path,
        content="wait_time=1&staff_attitude=3&problem_solved=9&comment=%E6%8E%92%E9%98%9F",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert detail.status_code == 200 and "<form" not in detail.text
    ratings = items(inbox, "email_rating")
    assert len(ratings) == 1
    assert ratings[0].payload == {
        "action_id": "ca_7",
        "score": 2,
        "comment": "排队",
        "attributes": {"wait_time": 1, "staff_attitude": 3},
    }


def test_bad_expired_and_misused_tokens(service):
    client, inbox, settings = service
    secret = settings.link_secret.get_secret_value()
    past = datetime.now(UTC) - timedelta(days=30)
    expired = rating_links("ca_1", PUBLIC_URL, secret, past)[5].removeprefix(PUBLIC_URL)
    assert client.get(expired).status_code == 410
    forged = sign(LinkToken("ca_1", "rate", 5, 2_000_000_000), "not-our-secret")
    assert client.get(f"/r/{forged}").status_code == 403
    unsubscribe = unsubscribe_link("ca_1", PUBLIC_URL, secret, datetime.now(UTC))
    token = unsubscribe.rsplit("/", 1)[1]
    assert client.get(f"/r/{token}").status_code == 403  # wrong purpose
    # a signature with characters no signature has: refused, not a server error
    for path in ("/r/abc.%C3%A9", "/unsubscribe/abc.%C3%A9", "/m/login/abc.%C3%A9"):
        assert client.get(path).status_code == 403, path
    assert client.post("/unsubscribe/abc.%C3%A9").status_code == 403
    assert items(inbox) == []


def test_one_click_unsubscribe(service):
    client, inbox, settings = service
    link = unsubscribe_link(
        "ca_3", PUBLIC_URL, settings.link_secret.get_secret_value(), datetime.now(UTC)
    ).removeprefix(PUBLIC_URL)
    assert "<form" in client.get(link).text and items(inbox) == []  # GET changes nothing
    assert client.head(link).status_code == 200 and items(inbox) == []  # nor does HEAD
    done = client.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert [(i.kind, i.payload) for i in items(inbox)] == [("unsubscribe", {"action_id": "ca_3"})]


def test_health(service):
    client, _, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_provider_without_its_key_has_its_routes_off_with_503(settings, monkeypatch):
    from starlette.testclient import TestClient

    from service.app import FeedbackService

    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    service = FeedbackService(load_settings())
    assert "Twilio webhooks off (no TWILIO_AUTH_TOKEN)" in service.enabled()
    with TestClient(service.app()) as client:
        sms = client.post("/webhooks/twilio/sms", content="Body=5")
        events = client.post("/webhooks/sendgrid/events", content="[]")
        assert sms.status_code == events.status_code == 503
        assert "TWILIO_AUTH_TOKEN" in sms.text and "SENDGRID_WEBHOOK_PUBLIC_KEY" in events.text
        assert client.get("/healthz").status_code == 200


def test_from_webhook_to_attributed_evaluation(service, con):
    client, inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1")
    sent = datetime.now(UTC) - timedelta(hours=1)
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=sent, sender="+15550001111")
    add_action(con, "E1", "S1", channel="email", recipient="c1@example.com", sent_at=sent)
    client.post(
        "/webhooks/twilio/sms",
        **twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", 1), PHONE, "１分 太慢")),
    )
    link = rating_links(
        "E1", PUBLIC_URL, settings.link_secret.get_secret_value(), datetime.now(UTC)
    )[4].removeprefix(PUBLIC_URL)
    client.post(
        link,
        content="problem_solved=5",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    collect(con, inbox, reply_window=timedelta(hours=72))
    rows = con.execute(
        "SELECT action_id, score, comment, attributes, attribution FROM "
        "evaluations ORDER BY action_id"
    ).fetchall()
    assert rows == [
        ("A1", 1, "太慢", None, "matched"),
        ("E1", 4, None, json.dumps({"problem_solved": 5}), "matched"),
    ]


def test_the_access_log_has_a_line_per_request_and_nothing_personal(service, caplog):
    client, _, settings = service
    link = unsubscribe_link(
        "ca_9", PUBLIC_URL, settings.link_secret.get_secret_value(), datetime.now(UTC)
    ).removeprefix(PUBLIC_URL)
    token = link.rsplit("/", 1)[1]
    with caplog.at_level("INFO", logger="careloop.access"):
        client.get(link)
        client.post(
            "/webhooks/twilio/sms",
            **twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", 9), PHONE, "5")),
        )
        client.get(f"/healthz/{PHONE}")
        client.get("/healthz/8613800000002 ca_2027030112345678901a/%2013800000003")
        client.get("/healthz/138-0000-0004/tel13800000005/%252B8613800000006/138%200000%200007")
        client.get("/healthz/+1(212)555-0108/138_0000_0009/138%E2%80%930000%E2%80%930010")
    lines = [r.getMessage() for r in caplog.records if r.name == "careloop.access"]
    assert len(lines) == 6
    assert f"GET /unsubscribe/{token[:8]}… 200" in lines[0] and token not in lines[0]
    assert "POST /webhooks/twilio/sms 200" in lines[1]
    assert "404" in lines[2] and PHONE not in lines[2] and "+86*******0001" in lines[2]
    bare = lines[3]  # phones without their '+' are masked too; an id's digits are not
    assert "13800000002" not in bare and "13800000003" not in bare
    assert "86*******0002" in bare and "\\x2013*****0003" in bare
    assert "ca_2027030112345678901a" in bare
    written = lines[4]  # split by dashes or spaces, after letters, encoded twice
    assert not any(f"0000{n}" in written or f"0000-000{n}" in written for n in range(4, 8))
    assert written.count("*") >= 4 * 5, written
    formed = lines[5]  # brackets, underscores, en dashes
    assert not any(digits in formed for digits in ("555-0108", "0000_0009", "0000\u20130010"))
    assert formed.count("*") >= 3 * 5, formed
    assert all(line.endswith("ms") for line in lines)


def test_a_path_cannot_forge_a_line_of_the_access_log(service, caplog):
    client, _, _ = service
    forged = "x%0A2026-12-05%2010:00:00,000%20203.0.113.9%20POST%20/m/login%20303%201.0ms%00"
    with caplog.at_level("INFO", logger="careloop.access"):
        client.get(f"/m/cases/{forged}")
    [line] = [r.getMessage() for r in caplog.records if r.name == "careloop.access"]
    assert "\n" not in line and "\x00" not in line
    # the forged time and address are digits enough to be masked as a phone; the rest escaped
    assert "x\\x0a20*" in line and "\\x20POST\\x20/m/login\\x20303" in line
    assert line.endswith("ms")
    # nor add fields after a link token's cut, nor turn the line's text around
    with caplog.at_level("INFO", logger="careloop.access"):
        client.get("/r/abcdefghij%0A2026%20POST%20/webhooks/twilio/sms%20200%201.0ms")
        client.get("/m/cases/x%E2%80%AEdesrever")
    *_, cut, bidi = [r.getMessage() for r in caplog.records if r.name == "careloop.access"]
    assert "/webhooks/twilio/sms\\x20200\\x201.0ms 404" in cut
    assert "\u202e" not in bidi and "x\\u202edesrever" in bidi
