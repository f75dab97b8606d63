"""The managers' page in process: sign-in links, sessions, CSRF, and no other store's case."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from cases.collect import collect
from core.settings import load_settings
from core.tokens import LinkToken, manager_link, sign
from feedback.ingest import watermark
from inbox.inbox import Inbox
from service.app import create_app
from tests.manager_world import build

PUBLIC = "https://care.example.com"


@pytest.fixture
def pages(con, settings, monkeypatch):
    monkeypatch.setenv("CARELOOP_PUBLIC_URL", PUBLIC)
    settings = load_settings()
    board = build(con, settings)
    with TestClient(create_app(settings), base_url=PUBLIC) as client:
        yield client, settings, board


def link(settings, store="ST1", issued=None, days=7):
    url = manager_link(
        store,
        PUBLIC,
        settings.link_secret.get_secret_value(),
        issued or datetime.now(UTC),
        timedelta(days=days),
    )
    return url.removeprefix(PUBLIC)


def sign_in(client, settings, store="ST1"):
    """The link's page, then its button (the link alone starts nothing: no login CSRF)."""
    shown = client.get(link(settings, store)).text
    form = {name: field(shown, name) for name in ("token", "nonce")}
    response = client.post("/m/login", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"{PUBLIC}/m/"
    return response


def field(page, name):
    return re.search(rf'name="{name}" value="([^"]+)"', page).group(1)


def csrf(page):
    return field(page, "csrf")


def test_a_link_starts_a_strict_session_and_shows_only_this_store(pages):
    client, settings, _ = pages
    cookie = sign_in(client, settings).headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    page = client.get("/m/").text
    assert "上海1号店" in page and "排队太久了" in page and "店员态度很差" in page
    assert "staff was rude" not in page  # ST2's case
    assert page.index('id="case-E1"') < page.index('id="case-E3"')  # open before closed


def test_no_url_reaches_another_stores_case(pages):
    client, settings, _ = pages
    sign_in(client, settings)
    token = csrf(client.get("/m/").text)
    assert client.get("/m/cases/E9").status_code == 404
    refused = client.post("/m/cases/E9", data={"csrf": token, "action": "contacted"})
    assert refused.status_code == 404
    for probe in ("/m/cases/E9%00", "/m/cases/..%2FE9", "/m/cases/E1'--"):
        assert client.get(probe).status_code == 404


def test_forged_expired_and_missing_sign_ins_are_refused(pages):
    client, settings, _ = pages
    good = link(settings)
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert client.get(forged).status_code == 403
    assert "not valid" in client.get(forged).text
    old = link(settings, issued=datetime.now(UTC) - timedelta(days=8))
    assert client.get(old).status_code == 410 and "expired" in client.get(old).text
    assert client.get("/m/").status_code == 401
    assert client.get("/m/cases/E1").status_code == 401
    # a rating link's token, signed with the same secret, is no sign-in
    rating = LinkToken("ST1", "rate", 5, int((datetime.now(UTC) + timedelta(days=1)).timestamp()))
    rating_token = sign(rating, settings.link_secret.get_secret_value())
    assert client.get(f"/m/login/{rating_token}").status_code == 403


def test_changes_need_the_sessions_token_and_our_origin(pages):
    client, settings, board = pages
    sign_in(client, settings)
    token = csrf(client.get("/m/").text)
    assert client.post("/m/cases/E1", data={"action": "contacted"}).status_code == 403
    assert client.post("/m/cases/E1", data={"csrf": "x", "action": "contacted"}).status_code == 403
    cross = client.post(
        "/m/cases/E1",
        data={"csrf": token, "action": "contacted"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert board.case("ST1", "E1")["status"] == "open"
    done = client.post(
        "/m/cases/E1",
        data={"csrf": token, "action": "contacted", "note": "called, sorry"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and board.case("ST1", "E1")["status"] == "contacted"


def test_a_managers_change_reaches_the_warehouse_through_collect(pages, con):
    client, settings, board = pages
    sign_in(client, settings)
    token = csrf(client.get("/m/").text)
    client.post("/m/cases/E2", data={"csrf": token, "action": "resolved", "note": "refunded"})
    refused = client.post(  # E3 is recovered: the page says so, and the note is kept
        "/m/cases/E3", data={"csrf": token, "action": "resolved", "note": "again?"},
        follow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 409 and "not applied" in refused.text
    assert board.case("ST1", "E3")["status"] == "recovered"
    figures = collect(con, Inbox(settings.inbox_path), reply_window=timedelta(hours=72))
    assert figures.drained == 2 and figures.case_changes == 1  # the refused one is kept, not taken
    row = con.execute(
        "SELECT status, closed_at IS NOT NULL, contacted_at IS NOT NULL FROM manager_cases "
        "WHERE evaluation_id = 'E2'"
    ).fetchone()
    assert row == ("resolved", True, True)  # resolving a case means the manager reached them
    events = con.execute(
        "SELECT actor, from_status, to_status, note, accepted FROM case_events ORDER BY 3, 2"
    ).fetchall()
    assert events == [
        ("manager:ST1", "open", "resolved", "refunded", True),
        ("manager:ST1", "recovered", "resolved", "again?", False),
    ]
    # the next publish keeps it, and shows its history
    from cases.publishing import publish_boards

    publish_boards(con, board, datetime.now(UTC), 48, watermark(con, board.inbox))
    detail = client.get("/m/cases/E2").text
    assert "refunded" in detail and board.case("ST1", "E2")["status"] == "resolved"
    assert "店长" in detail and "manager:ST1" not in detail  # who did it, in the page's language


def test_bad_bodies_are_the_clients_fault_never_a_500(pages):
    client, settings, board = pages
    sign_in(client, settings)
    token = csrf(client.get("/m/").text)
    huge = client.post(
        "/m/cases/E1", content=b"csrf=" + token.encode() + b"&note=" + b"x" * 200_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert huge.status_code == 413
    garbled = client.post(
        "/m/cases/E1", content=b"csrf=\xff\xfe&action=contacted",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert garbled.status_code == 400
    assert client.head("/m/").status_code == 200 and client.head("/m/cases/E9").status_code == 404
    assert board.case("ST1", "E1")["status"] == "open"


def test_careloops_notes_are_in_the_pages_language_and_what_people_wrote_as_written(pages, con):
    """A Chinese page showed careloop's own notes in English: "follow-up rated 1/5: 话费多扣了"."""
    from cases.notes import shown_note
    from cases.publishing import publish_boards

    client, settings, board = pages
    sign_in(client, settings)
    notes = [
        ("customer", "follow-up rated 1/5: 话费多扣了"),
        ("system", "not asked again: no consent for sms"),
        ("manager:ST1", "no answer yet, will call"),
    ]
    for n, (actor, note) in enumerate(notes):
        con.execute(
            "INSERT INTO case_events (event_key, evaluation_id, occurred_at, actor, from_status, "
            "to_status, note, accepted) VALUES (?, 'E2', now(), ?, 'open', 'open', ?, true)",
            [f"note-{n}", actor, note],
        )
    con.execute("UPDATE manager_cases SET board_stale = true WHERE evaluation_id = 'E2'")
    publish_boards(con, board, datetime.now(UTC), 48, watermark(con, board.inbox))
    detail = client.get("/m/cases/E2").text
    assert "回访评分：1/5，话费多扣了" in detail and "follow-up rated" not in detail
    assert "未再次询问：未同意接收短信" in detail
    assert "no answer yet, will call" in detail  # a manager's words, as written
    # stored as written; an English page shows it so
    assert shown_note(notes[0][1], "customer", "en") == notes[0][1]
    assert shown_note("no answer yet", "manager:ST1", "zh-CN") == "no answer yet"


def test_every_note_careloop_writes_reads_in_chinese():
    """The note 'no regional contact to tell', a literal beside the phrases, showed as
    '已上报：无regional contact to tell'."""
    from cases import notes
    from cases.follow_up import CONTACT

    reasons = [
        *(notes.NO_CONTACT + contact for contact in set(CONTACT.values())),
        *(prefix + channel for prefix in (notes.OPTED_OUT, notes.NO_CONSENT)
          for channel in CONTACT),
    ]  # fmt: skip
    written = [
        notes.NO_ANSWER,
        notes.ESCALATED + notes.NO_REGIONAL_CONTACT,
        notes.ESCALATED + notes.TOLD + "Ann",
        *(notes.NOT_ASKED + reason for reason in reasons),
        *(rated + "2/5" for rated in (notes.RATED_AGAIN, notes.SECOND_ROUND_RATED,
                                       notes.FOLLOW_UP_RATED)),
    ]  # fmt: skip
    for note in written:
        shown = notes.shown_note(note, "system", "zh-CN") or ""
        left = re.findall(r"[a-z]{2,}", shown.replace("Ann", ""))
        assert not left, (note, shown)
