"""Manager sessions kept on the server (issue 22): they end on sign-out, on a new manager or a
revoke, and at an absolute time that use does not move; the sign-in link only shows a button
(no login CSRF); every page carries the security headers; redirects name our public URL."""

import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from careloop.cli import app as cli
from core.settings import load_settings
from core.tokens import manager_link
from inbox.inbox import Inbox
from inbox.sessions import ManagerSessions
from service.app import create_app
from tests.manager_world import build
from warehouse.db import connect

PUBLIC = "https://care.example.com"
COOKIE = "careloop_manager"


@pytest.fixture
def world(settings, monkeypatch):
    """The two stores' boards, the warehouse closed again (the CLI opens it): settings."""
    monkeypatch.setenv("CARELOOP_PUBLIC_URL", PUBLIC)
    settings = load_settings()
    con = connect(settings.warehouse_path)
    build(con, settings)
    con.close()
    return settings


def client_for(settings):
    return TestClient(create_app(settings), base_url=PUBLIC)


def link(settings, store="ST1", issued=None, days=7):
    secret = settings.link_secret.get_secret_value()
    url = manager_link(store, PUBLIC, secret, issued or datetime.now(UTC), timedelta(days=days))
    return url.removeprefix(PUBLIC)


def field(page, name):
    return re.search(rf'name="{name}" value="([^"]+)"', page).group(1)


def sign_in(client, settings, store="ST1"):
    """The link's page, then its button: the session's cookie value."""
    shown = client.get(link(settings, store))
    assert shown.status_code == 200
    form = {"token": field(shown.text, "token"), "nonce": field(shown.text, "nonce")}
    started = client.post("/m/login", data=form, follow_redirects=False)
    assert started.status_code == 303, started.text
    assert started.headers["location"] == f"{PUBLIC}/m/"
    return client.cookies[COOKIE]


def with_cookie(settings, value):
    """Another browser (or a thief) holding this cookie value."""
    other = client_for(settings)
    other.cookies.set(COOKIE, value, domain="care.example.com", path="/m")
    return other


def test_the_link_shows_a_button_in_the_managers_language_and_starts_nothing(world):
    with client_for(world) as client:
        shown = client.get(link(world))
        assert shown.status_code == 200
        assert '<form method="post" action="/m/login">' in shown.text
        assert "登录" in shown.text  # ST1's manager reads Chinese
        assert COOKIE not in shown.headers.get("set-cookie", "")
        assert client.get("/m/").status_code == 401
        english = client.get(link(world, "ST2"))
        assert "Sign in" in english.text and "登录" not in english.text.split("<body>")[1]


def test_a_sign_in_posted_from_another_site_is_refused(world):
    with client_for(world) as mine, client_for(world) as victim:
        # the attacker takes his own store's form, with its nonce and his token...
        shown = mine.get(link(world, "ST2"))
        form = {"token": field(shown.text, "token"), "nonce": field(shown.text, "nonce")}
        # ...and makes the manager's browser post it: that browser has no nonce cookie
        forged = victim.post("/m/login", data=form, follow_redirects=False)
        assert forged.status_code == 403 and COOKIE not in victim.cookies
        # a browser that does hold a nonce (it opened a link) still refuses a cross-site post
        victim.get(link(world, "ST1"))
        for elsewhere in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            cross = victim.post(
                "/m/login",
                data={**form, "nonce": victim.cookies["careloop_login"]},
                headers=elsewhere,
                follow_redirects=False,
            )
            assert cross.status_code == 403 and COOKIE not in victim.cookies
        assert victim.get("/m/").status_code == 401


def test_an_expired_link_starts_no_session_even_when_posted(world):
    with client_for(world) as client:
        old = link(world, issued=datetime.now(UTC) - timedelta(days=8))
        assert client.get(old).status_code == 410
        fresh = client.get(link(world))
        token = old.removeprefix("/m/login/")
        posted = client.post("/m/login", data={"token": token, "nonce": field(fresh.text, "nonce")})
        assert posted.status_code == 410 and COOKIE not in client.cookies


def test_the_session_cookie_is_a_random_id_whose_hash_alone_is_stored(world):
    with client_for(world) as client:
        shown = client.get(link(world))
        form = {"token": field(shown.text, "token"), "nonce": field(shown.text, "nonce")}
        started = client.post("/m/login", data=form, follow_redirects=False)
        cookie = started.headers["set-cookie"].lower()
        for attribute in ("httponly", "secure", "samesite=strict", "path=/m", "max-age=43200"):
            assert attribute in cookie
        value = client.cookies[COOKIE]
        assert len(value) >= 32 and "ST1" not in value and "." not in value  # not signed data
        with sqlite3.connect(world.inbox_path) as db:
            rows = db.execute("SELECT * FROM manager_sessions").fetchall()
        assert len(rows) == 1 and value not in repr(rows)


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(world):
    with client_for(world) as client:
        value = sign_in(client, world)
        page = client.get("/m/").text
        out = client.post("/m/logout", data={"csrf": field(page, "csrf")})
        assert out.status_code == 200
        with with_cookie(world, value) as thief:
            assert thief.get("/m/").status_code == 401
            assert thief.get("/m/cases/E1").status_code == 401
            changed = thief.post(
                "/m/cases/E1", data={"csrf": field(page, "csrf"), "action": "contacted"}
            )
            assert changed.status_code == 401


def test_use_never_extends_a_session(world, monkeypatch):
    import service.managers

    start = datetime.now(UTC)
    with client_for(world) as client:
        value = sign_in(client, world)
        monkeypatch.setattr(service.managers, "utc_now", lambda: start + timedelta(hours=11))
        used = client.get("/m/")
        assert used.status_code == 200 and "set-cookie" not in used.headers  # no fresh time
        monkeypatch.setattr(
            service.managers, "utc_now", lambda: start + timedelta(hours=12, minutes=1)
        )
        with with_cookie(world, value) as later:
            assert later.get("/m/").status_code == 401


def test_a_new_manager_ends_the_stores_sessions_and_its_old_links(world, tmp_path):
    with client_for(world) as client, client_for(world) as other_store:
        old_link = link(world)
        value = sign_in(client, world)
        sign_in(other_store, world, "ST2")
        stores = tmp_path / "stores.csv"
        stores.write_text(
            "store_id,name,city,region,timezone,manager_name,manager_email\n"
            "ST1,上海1号店,Shanghai,East China,Asia/Shanghai,李娜,m1-new@example.com\n"
            "ST2,New York #2,New York,East China,America/New_York,王伟,m1@example.com\n",
            encoding="utf-8",
        )
        loaded = CliRunner().invoke(cli, ["load", "stores", str(stores)])
        assert loaded.exit_code == 0, loaded.output
        assert "ST1" in loaded.output and "signed out" in loaded.output
        with with_cookie(world, value) as gone:
            assert gone.get("/m/").status_code == 401
        assert client.get(old_link).status_code == 403  # the old manager's link is dead too
        assert other_store.get("/m/").status_code == 200  # ST2 kept its manager
        sign_in(client, world)  # a link issued now works for the new manager
        assert client.get("/m/").status_code == 200


def test_revoke_ends_every_session_of_one_store(world):
    with client_for(world) as one, client_for(world) as two, client_for(world) as st2:
        sign_in(one, world)
        sign_in(two, world)
        sign_in(st2, world, "ST2")
        revoked = CliRunner().invoke(cli, ["managers", "revoke", "ST1"])
        assert revoked.exit_code == 0, revoked.output
        assert "2 session(s)" in revoked.output
        assert one.get("/m/").status_code == 401 and two.get("/m/").status_code == 401
        assert st2.get("/m/").status_code == 200
        unknown = CliRunner().invoke(cli, ["managers", "revoke", "NOPE"])
        assert unknown.exit_code != 0 and "unknown store" in unknown.output


def test_sessions_work_alike_on_both_inbox_engines_and_expired_ones_are_pruned(inbox_url):
    sessions = ManagerSessions(Inbox(inbox_url).db)
    now = datetime.now(UTC)
    first = sessions.start("ST1", now, timedelta(hours=12))
    second = sessions.start("ST1", now, timedelta(hours=1))
    other = sessions.start("ST2", now, timedelta(hours=12))
    found = sessions.find(first.id, now + timedelta(hours=2))
    assert found is not None and found.store_id == "ST1" and found.csrf == first.csrf
    assert sessions.find(second.id, now + timedelta(hours=2)) is None  # past its lifetime
    assert sessions.find("not-a-session", now) is None
    assert sessions.prune(now + timedelta(hours=2)) == 1  # the expired row goes
    sessions.end(first.id)
    assert sessions.find(first.id, now) is None
    again = sessions.start("ST1", now, timedelta(hours=12))
    assert sessions.revoke("ST1", now + timedelta(seconds=1)) == 1
    assert sessions.find(again.id, now) is None and sessions.find(other.id, now) is not None
    revoked = sessions.revoked_at("ST1")
    assert revoked is not None and revoked > now and sessions.revoked_at("ST2") is None


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize(
    "path", ["/m/", "/m/login/x.y", "/healthz", "/r/x.y", "/unsubscribe/x.y", "/nowhere"]
)
def test_every_page_forbids_scripts_framing_and_sniffing(world, path):
    with client_for(world) as client:
        if path == "/m/":
            sign_in(client, world)
        answer = client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy and "unsafe-inline" not in policy
        assert answer.headers["cache-control"] == "no-store"


def test_pages_keep_no_inline_style_or_script_and_their_stylesheet_loads(world):
    with client_for(world) as client:
        sign_in(client, world)
        pages = [
            client.get("/m/").text,
            client.get("/m/cases/E1").text,
            client.get(link(world)).text,
        ]
        for page in pages:
            assert "<style" not in page and " style=" not in page and "<script" not in page
            assert '<link rel="stylesheet" href="/static/careloop.css">' in page
        sheet = client.get("/static/careloop.css")
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/m", "/healthz/"])
def test_a_redirect_names_our_public_url_whatever_the_host_header(world, path):
    with client_for(world) as client:
        answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert answer.is_redirect
        assert answer.headers["location"].startswith(f"{PUBLIC}/"), answer.headers["location"]
        assert "evil.example" not in answer.headers["location"]
