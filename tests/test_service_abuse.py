"""The feedback service attacked: scanners, replays, huge and malformed bodies, poison items,
and the development secret on a public interface (issue 8: links and webhooks)."""

import asyncio
import json
from datetime import UTC, datetime

import pytest

from core.settings import ConfigError, load_settings
from core.tokens import rating_links
from inbox.inbox import Inbox
from service.app import check_exposure
from service.writer import InboxWriter, ReplayedSignatureError, Write
from tests.service_helpers import (
    PUBLIC_URL,
    events_body,
    sid,
    sms_form,
    twilio_post,
)

PHONE = "+8613800000001"
SMS = "/webhooks/twilio/sms"
EVENTS = "/webhooks/sendgrid/events"


def stored(inbox):
    return [i for batch in inbox.after(0) for i in batch]


def test_a_scanner_following_a_rating_link_records_nothing(service):
    client, inbox, settings = service
    secret = settings.link_secret.get_secret_value()
    link = rating_links("ca_1", PUBLIC_URL, secret, datetime.now(UTC))[1].removeprefix(PUBLIC_URL)
    for method in ("GET", "HEAD", "GET"):
        assert client.request(method, link).status_code == 200
    assert stored(inbox) == []
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(link, content="", headers=form).status_code == 200
    [rating] = stored(inbox)
    assert rating.kind == "email_rating" and rating.payload["score"] == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "care.example.com", "::"])
def test_the_development_secret_is_refused_off_loopback(settings, host):
    with pytest.raises(ConfigError, match="CARELOOP_LINK_SECRET is still the development value"):
        check_exposure(settings, host)


def test_loopback_or_a_real_secret_may_serve(settings, monkeypatch):
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(settings, host)
    monkeypatch.setenv("CARELOOP_LINK_SECRET", "a-long-random-production-secret")
    check_exposure(load_settings(), "0.0.0.0")


def test_a_huge_body_is_refused_by_its_length_before_it_is_read(service):
    client, inbox, _ = service
    huge = b"a=" + b"b" * (9 * 1024 * 1024)
    assert client.post(SMS, content=huge).status_code == 413
    assert client.post(EVENTS, content=huge).status_code == 413
    assert stored(inbox) == []


def test_a_million_fields_get_400_not_a_frozen_loop(service):
    client, _, _ = service
    body = "&".join(f"f{n}=1" for n in range(5000))  # within 64 KB, far over 200 fields
    assert client.post(SMS, content=body).status_code == 400


@pytest.mark.parametrize(
    ("body", "headers_for"),
    [
        (b"\xff\xfe not utf-8", None),
        ("not json", "signed"),
        ("[" * 5000 + "]" * 5000, "signed"),
        ('[1, 2, "three"]', "signed"),
        ('{"event": "open"}', "signed"),
    ],
)
def test_malformed_sendgrid_bodies_get_400(service, signer, body, headers_for):
    client, inbox, _ = service
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    headers = signer.headers(text) if headers_for else signer.headers("x")
    assert client.post(EVENTS, content=body, headers=headers).status_code in (400, 403)
    assert stored(inbox) == []


@pytest.mark.parametrize("stamp", ["abc", "9" * 400, "-5", "", "1e9"])
def test_bad_sendgrid_timestamps_get_403(service, signer, stamp):
    client, _, _ = service
    body = events_body([{"event": "open", "sg_event_id": "e1"}])
    headers = signer.headers(body) | {"X-Twilio-Email-Event-Webhook-Timestamp": stamp}
    assert client.post(EVENTS, content=body, headers=headers).status_code == 403


def test_invalid_utf8_in_a_twilio_form_gets_400(service):
    client, _, _ = service
    response = client.post(
        SMS, content=b"Body=%FF%FE&From=%2B86", headers={"X-Twilio-Signature": "x"}
    )
    assert response.status_code in (400, 403)
    raw = client.post(SMS, content=b"Body=\xff\xfe", headers={"X-Twilio-Signature": "x"})
    assert raw.status_code == 400


def test_a_re_split_replay_is_refused(service):
    client, inbox, _ = service
    real_sid = sid("SM", "captured")
    form = sms_form(real_sid, PHONE, "5")
    request = twilio_post(SMS, form)
    assert client.post(SMS, **request).status_code == 200
    # MessageSid absorbs the next field: the signature still matches, the SID does not.
    resplit = {k: v for k, v in form.items() if k != "NumMedia"}
    resplit["MessageSid"] = real_sid + "NumMedia0"
    signed = twilio_post(SMS, form)["headers"]
    assert (
        client.post(SMS, content=twilio_post(SMS, resplit)["content"], headers=signed).status_code
        == 403
    )
    assert [i.dedupe_key for i in stored(inbox)] == [real_sid]


def test_a_signature_seen_with_another_sid_is_refused(settings):
    async def scenario():
        writer = InboxWriter(Inbox(settings.inbox_path))
        await writer.start()
        now = datetime.now(UTC)
        first, second = sid("SM", 1), sid("SM", 2)
        await writer.write(Write([("sms", first, now, {"Body": "5"})], "sig", first))
        await writer.write(Write([("sms", first, now, {"Body": "5"})], "sig", first))  # a retry
        with pytest.raises(ReplayedSignatureError):
            await writer.write(Write([("sms", second, now, {"Body": "5"})], "sig", second))
        await writer.stop()

    asyncio.run(scenario())
    assert [i.dedupe_key for i in stored(Inbox(settings.inbox_path))] == [sid("SM", 1)]


def test_a_lone_surrogate_gets_400_over_http(service, signer):
    client, inbox, _ = service
    body = '[{"event": "open", "sg_event_id": "e1", "email": "\\ud800"}]'
    assert client.post(EVENTS, content=body, headers=signer.headers(body)).status_code == 400
    assert stored(inbox) == []


def test_one_poison_write_never_sinks_its_group(settings):
    async def scenario():
        writer = InboxWriter(Inbox(settings.inbox_path))
        await writer.start()
        now = datetime.now(UTC)
        good = [Write([("sms", sid("SM", n), now, {"Body": str(n % 5 + 1)})]) for n in range(300)]
        poison = Write([("status", "bad", now, {"email": "\ud800"})])
        outcomes = await asyncio.gather(
            *(writer.write(w) for w in [*good[:150], poison, *good[150:]]), return_exceptions=True
        )
        await writer.stop()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[150], ValueError)
    assert [o for n, o in enumerate(outcomes) if n != 150] == [None] * 300
    assert len(stored(Inbox(settings.inbox_path))) == 300


def test_healthz_head_and_get(service):
    client, _, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200
    assert json.loads(client.get("/healthz").text)["status"] == "ok"


def test_old_signatures_are_pruned_after_twilios_retry_horizon(settings, monkeypatch):
    from service import writer as writer_module

    clock = [1_000_000.0]
    monkeypatch.setattr(writer_module.time, "time", lambda: clock[0])

    async def scenario():
        writer = InboxWriter(Inbox(settings.inbox_path))
        await writer.start()
        now = datetime.now(UTC)
        old, new = sid("SM", "old"), sid("SM", "new")
        await writer.write(Write([("sms", old, now, {"Body": "5"})], "sig-old", old))
        clock[0] += writer_module.SIGNATURE_RETENTION_SECONDS + 3601
        await writer.write(Write([("sms", new, now, {"Body": "4"})], "sig-new", new))
        await writer.stop()

    asyncio.run(scenario())
    with Inbox(settings.inbox_path).db.connection() as con:
        kept = con.execute("SELECT signature FROM seen_signatures").fetchall()
    assert kept == [("sig-new",)]


def test_a_value_only_the_database_refuses_sinks_no_other_request(postgres_inbox_url):
    """PostgreSQL refuses a NUL in text, which the writer cannot know beforehand: the group
    falls back to a savepoint per request, and only that request is refused."""
    from inbox.postgres import PostgresInboxDb

    async def scenario():
        writer = InboxWriter(Inbox(postgres_inbox_url))
        await writer.start()
        now = datetime.now(UTC)
        good = [Write([("sms", sid("SM", n), now, {"Body": "5"})]) for n in range(100)]
        poison = Write([("sms", "SM\x00nul", now, {"Body": "5"})])
        outcomes = await asyncio.gather(
            *(writer.write(w) for w in [*good[:50], poison, *good[50:]]), return_exceptions=True
        )
        await writer.stop()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[50], PostgresInboxDb.errors)
    assert [o for n, o in enumerate(outcomes) if n != 50] == [None] * 100
    assert len(stored(Inbox(postgres_inbox_url))) == 100


@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "-Infinity", "1e999", '{"deep": [1, NaN]}', "[-1e400]"],
)
def test_a_signed_batch_with_a_non_finite_number_gets_400(service, signer, value):
    """JSON has no NaN or Infinity (Python's parser takes them, and 1e999 overflows to
    infinity); stored, they made the inbox's JSON functions fail with a 500."""
    client, inbox, _ = service
    body = f'[{{"event": "open", "sg_event_id": "e1", "timestamp": {value}}}]'
    answer = client.post(EVENTS, content=body, headers=signer.headers(body))
    assert answer.status_code == 400 and "finite" in answer.text
    assert stored(inbox) == []
    fine = '[{"event": "open", "sg_event_id": "e2", "timestamp": 1.5e9}]'
    assert client.post(EVENTS, content=fine, headers=signer.headers(fine)).status_code == 200


def test_a_twilio_form_number_is_text_and_never_a_500(service):
    """Twilio's numbers (ErrorCode, Digits) stay the text Twilio sent: NaN is stored as text."""
    client, inbox, _ = service
    form = sms_form(sid("SM", "nan1"), PHONE, "NaN") | {"NumSegments": "Infinity"}
    request = twilio_post(SMS, form)
    assert client.post(SMS, **request).status_code == 200
    assert [i.payload["NumSegments"] for i in stored(inbox)] == ["Infinity"]
