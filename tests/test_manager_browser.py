"""The managers' page in a real browser: Debian's headless Chromium driven by Selenium
against `careloop serve` in its own process. Screenshots of the list on a desktop and a
phone-sized screen go to CARELOOP_SCREENSHOTS (default: the test's temporary folder)."""

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from core.settings import load_settings
from core.tokens import manager_link
from tests.manager_world import build
from warehouse.db import connect

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)
BIN = Path(sys.executable).parent


def _port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path, monkeypatch):
    port = _port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "home"
    monkeypatch.setenv("CARELOOP_HOME", str(home))
    monkeypatch.setenv("CARELOOP_PUBLIC_URL", url)
    settings = load_settings()
    con = connect(settings.warehouse_path)
    build(con, settings)
    con.close()
    process = subprocess.Popen(
        [BIN / "careloop", "serve", "--port", str(port)],
        env={**os.environ},
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # observed progress: the service answers
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                break
        except requests.ConnectionError:
            threading.Event().wait(0.1)
    try:
        yield url, settings
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(1280, 1000)
    try:
        yield driver
    finally:
        driver.quit()


def link(url, settings, issued=None):
    secret = settings.link_secret.get_secret_value()
    return manager_link("ST1", url, secret, issued or datetime.now(UTC), timedelta(days=7))


def click_through(browser, element):
    """Click ``element`` and wait until the page it leads to has replaced this one: a get or
    a read right after the click would otherwise race its navigation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 20).until(lambda _: replaced(page))


def replaced(page) -> bool:
    """Whether ``page`` (its html element) has left the document. Chromium says so in two
    ways: a stale element, or, asked mid-navigation, a node that "does not belong to the
    document" (a plain WebDriverException, which selenium's staleness_of lets through)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def sign_in(browser, url):
    """Open the personal link and press its button, as a manager does."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/m/login'] button"))


def test_a_manager_signs_in_works_a_case_and_reaches_nothing_else(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, settings = served
    shots = Path(os.environ.get("CARELOOP_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    sign_in(browser, link(url, settings))
    assert browser.current_url == f"{url}/m/"
    assert "上海1号店" in browser.title
    cases = {
        e.get_attribute("id"): e.get_attribute("data-status")
        for e in browser.find_elements(By.CSS_SELECTOR, "section.case")
    }
    assert cases == {"case-E1": "open", "case-E2": "open", "case-E3": "recovered"}
    assert "staff was rude" not in browser.page_source  # ST2's customer
    browser.save_screenshot(str(shots / "board-desktop.png"))
    browser.set_window_size(390, 844)  # a phone
    browser.save_screenshot(str(shots / "board-phone.png"))
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 390

    # resolve E1 with a note: it moves to the closed cases
    case = browser.find_element(By.ID, "case-E1")
    case.find_element(By.NAME, "note").send_keys("已致电道歉，并补偿话费")
    click_through(browser, case.find_element(By.CSS_SELECTOR, "button[value='resolved']"))
    moved = browser.find_element(By.ID, "case-E1")
    assert moved.get_attribute("data-status") == "resolved"
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    page = browser.page_source
    assert page.index(headings[1]) < page.index('id="case-E1"')  # under "closed" now
    browser.get(f"{url}/m/cases/E1")
    assert "已致电道歉，并补偿话费" in browser.page_source

    # another store's case, a forged link and an expired one: refused, each with a page
    browser.get(f"{url}/m/cases/E9")
    assert "No such case" in browser.page_source and "staff was rude" not in browser.page_source
    forged = link(url, settings)[:-2] + "xx"
    browser.delete_all_cookies()
    browser.get(forged)
    assert "not valid" in browser.page_source
    browser.get(f"{url}/m/")
    assert "Sign in with your personal link" in browser.page_source
    browser.get(link(url, settings, issued=datetime.now(UTC) - timedelta(days=8)))
    assert "expired" in browser.page_source and not browser.find_elements(By.TAG_NAME, "button")
    browser.get(f"{url}/m/cases/E2")
    assert "Sign in" in browser.page_source  # an expired link starts no session


@pytest.fixture
def elsewhere(tmp_path):
    """Another site (localhost is not 127.0.0.1's site): serves pages the test writes."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "elsewhere"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_page_elsewhere_cannot_sign_the_browser_in(served, browser, elsewhere):
    """Login CSRF: the attacker's own link (ST2's), opened or posted from his page, must not
    sign the manager's browser into his store."""
    from selenium.webdriver.common.by import By

    url, settings = served
    root, site = elsewhere
    theirs = manager_link(
        "ST2", url, settings.link_secret.get_secret_value(), datetime.now(UTC), timedelta(days=7)
    )
    token = theirs.rsplit("/", 1)[1]
    # the nonce the attacker got by opening his link himself
    nonce = requests.get(theirs, timeout=10).cookies.get("careloop_login", "stolen")
    (root / "index.html").write_text(
        f'<a id="open" href="{theirs}">cute cats</a>'
        f'<form id="post" method="post" action="{url}/m/login">'
        f'<input type="hidden" name="token" value="{token}">'
        f'<input type="hidden" name="nonce" value="{nonce}">'
        '<button id="go" type="submit">more cats</button></form>'
    )
    browser.get(f"{site}/index.html")
    click_through(browser, browser.find_element(By.ID, "open"))  # a link in their page
    browser.get(f"{url}/m/")
    assert "Sign in with your personal link" in browser.page_source
    browser.get(f"{site}/index.html")
    click_through(browser, browser.find_element(By.ID, "go"))  # their form, posted to us
    browser.get(f"{url}/m/")
    assert "Sign in with your personal link" in browser.page_source
    assert "New York #2" not in browser.title


def test_signing_out_in_the_browser_ends_the_session_for_a_copied_cookie(served, browser):
    from selenium.webdriver.common.by import By

    url, settings = served
    sign_in(browser, link(url, settings))
    cookie = browser.get_cookie("careloop_manager")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/m"
    # our own stylesheet is applied under the page's Content-Security-Policy
    header = browser.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(23, 54, 93, 1)"
    copied = requests.Session()
    copied.cookies.set("careloop_manager", cookie["value"], path="/m")
    assert copied.get(f"{url}/m/", timeout=10).status_code == 200
    click_through(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/m/logout'] button"))
    assert "您已退出" in browser.page_source or "signed out" in browser.page_source.lower()
    assert browser.get_cookie("careloop_manager") is None
    assert copied.get(f"{url}/m/", timeout=10).status_code == 401
    browser.get(f"{url}/m/")
    assert "Sign in with your personal link" in browser.page_source
