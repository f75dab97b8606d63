"""The service as a real process: killed mid-load it loses no acknowledged reply, and it runs
beside a flow that holds the warehouse."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from inbox.inbox import Inbox
from tests.service_helpers import AUTH_TOKEN, PUBLIC_URL, SendGridSigner, sms_form, twilio_post
from tests.service_helpers import sid as twilio_sid


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(home, port, **extra):
    env = {
        **os.environ,
        **extra,
        "CARELOOP_HOME": str(home),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SendGridSigner().public_key,
        "CARELOOP_PUBLIC_URL": PUBLIC_URL,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "careloop.cli", "serve", "--port", str(port)], env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process
        except requests.ConnectionError:
            threading.Event().wait(0.05)  # not listening yet: ask again shortly
    process.kill()
    raise RuntimeError("the service did not start")


def on_a_free_port(start, attempts=3):
    """``start(port)`` on a port free a moment ago: on a loaded machine another process may
    take it first (the server then fails to bind and ``start`` raises RuntimeError), so a new
    port is tried."""
    for _ in range(attempts - 1):
        try:
            return start(free_port())
        except RuntimeError:
            continue
    return start(free_port())


def start_on_a_free_port(home, **extra):
    """A service, and the port it listens on."""
    return on_a_free_port(lambda port: (start_service(home, port, **extra), port))


def fire(port, prefix, acknowledged, stop, senders=16, pause=0.0):
    """Signed SMS replies from many senders until stopped; remember what got a 2xx."""

    def sender(n):
        session = requests.Session()
        count = 0
        while not stop.is_set():
            sid = twilio_sid("SM", f"{prefix}{n:02d}x{count:05d}")
            request = twilio_post(
                "/webhooks/twilio/sms", sms_form(sid, f"+86138{n:08d}", str(count % 5 + 1))
            )
            try:
                response = session.post(
                    f"http://127.0.0.1:{port}/webhooks/twilio/sms",
                    data=request["content"],
                    headers=request["headers"],
                    timeout=5,
                )
            except requests.RequestException:
                return
            if response.ok:
                acknowledged.add(sid)
            count += 1
            stop.wait(pause)  # paced like webhook traffic, not a synchronisation

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    return threads


def test_a_killed_service_loses_no_acknowledged_reply(settings):
    service, port = start_on_a_free_port(settings.home)
    acknowledged, stop = set(), threading.Event()
    threads = fire(port, "SMk", acknowledged, stop)
    deadline = time.monotonic() + 120
    while len(acknowledged) < 300 and time.monotonic() < deadline:  # observed progress
        stop.wait(0.01)
    service.send_signal(signal.SIGKILL)  # mid-load, no warning
    service.wait()
    stop.set()
    for thread in threads:
        thread.join()
    stored = {i.dedupe_key for batch in Inbox(settings.inbox_path).after(0) for i in batch}
    assert len(acknowledged) > 100
    assert acknowledged <= stored


@pytest.mark.usefixtures("prefect_harness")
def test_the_service_and_a_collecting_flow_side_by_side(settings, con):
    from flows.collect_feedback import collect_feedback

    con.close()  # the flow opens the warehouse itself, as in production
    service, port = start_on_a_free_port(settings.home)
    acknowledged, stop = set(), threading.Event()
    # Paced like real webhook traffic: this test shares its GIL with Prefect's test server.
    threads = fire(port, "SMs", acknowledged, stop, senders=4, pause=0.02)
    try:
        runs = [collect_feedback(home=str(settings.home)) for _ in range(3)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    last = collect_feedback(home=str(settings.home))
    service.terminate()
    service.wait()
    drained = sum(r["drained"] for r in [*runs, last])
    assert len(acknowledged) > 50 and drained >= len(acknowledged)
    from warehouse.db import connect

    check = connect(settings.warehouse_path)
    ingested = {k for (k,) in check.execute("SELECT dedupe_key FROM inbound_messages").fetchall()}
    check.close()
    assert {f"sms:{sid}" for sid in acknowledged} <= ingested


def raw_request(port, head, timeout=30):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head)
    return sock


def status_of(sock):
    """The status code of the answer on ``sock`` (waits for it: observed progress)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else None


def test_a_streamed_huge_body_is_cut_off_and_health_still_answers(settings):
    service, port = start_on_a_free_port(settings.home)
    try:
        sock = raw_request(
            port,
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n",
        )
        sent, chunk = 0, b"a" * 65536
        try:
            while sent < 9 * 1024 * 1024:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if sent == 4 * 65536:  # mid-body: the service still answers others
                    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service hung up on the rest: the point
        assert status_of(sock) == 413
        sock.close()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    finally:
        service.kill()
        service.wait()
    assert Inbox(settings.inbox_path).count() == 0


def test_a_body_that_never_finishes_is_refused_in_time(settings):
    service, port = start_on_a_free_port(settings.home, CARELOOP_BODY_TIMEOUT_SECONDS="1")
    try:
        sock = raw_request(
            port,
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\nBody=5",
        )
        assert status_of(sock) == 408  # the other 94 bytes never come
        sock.close()
    finally:
        service.kill()
        service.wait()


def attempt(port, head):
    """A connection that may be refused as it connects (reset during the connect or the
    send): the socket, or None when it was reset before it could be used."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    except ConnectionResetError:
        return None
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # closed at once
        sock.sendall(head)
    return sock


def closed_or_refused(sock):
    """What the service did with a connection it should drop: the status it answered with
    (None when it just hung up). A service that keeps the connection open lets the socket's
    own timeout fire (socket.timeout), failing the test."""
    if sock is None:
        return None
    try:
        return status_of(sock)
    except ConnectionResetError:
        return None


def test_a_head_that_never_finishes_is_cut_off(settings):
    service, port = start_on_a_free_port(settings.home, CARELOOP_HEAD_TIMEOUT_SECONDS="1")
    try:
        # header lines trickle in and the blank line never comes
        slow = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n", timeout=30)
        silent = raw_request(port, b"", timeout=30)  # connected, says nothing at all
        assert closed_or_refused(slow) in (None, 408)
        assert closed_or_refused(silent) in (None, 408)
        slow.close()
        silent.close()
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    finally:
        service.kill()
        service.wait()


def test_one_client_holds_at_most_its_share_of_connections(settings):
    service, port = start_on_a_free_port(settings.home, CARELOOP_CONNECTIONS_PER_CLIENT="5")
    held = []
    try:
        for _ in range(5):  # heads in progress: each one a connection held open
            held.append(raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", timeout=30))
        extra = attempt(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_or_refused(extra) in (None, 503)
        if extra:
            extra.close()
        held.pop().close()  # one let go: a place for a new connection
        deadline = time.monotonic() + 30
        while True:  # observed progress: the service has seen the close
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                threading.Event().wait(0.05)
    finally:
        for sock in held:
            sock.close()
        service.kill()
        service.wait()


def test_a_service_on_another_port_names_itself_in_its_links(tmp_path):
    """Served on --port 18xxx with no CARELOOP_PUBLIC_URL, links and the sign-in form's
    origin named the default port 8000: a manager's sign-in went nowhere, saying nothing."""
    env = {k: v for k, v in os.environ.items() if k != "CARELOOP_PUBLIC_URL"}
    env["CARELOOP_HOME"] = str(tmp_path / "care")

    def start(port):
        process = subprocess.Popen(
            [sys.executable, "-m", "careloop.cli", "serve", "--port", str(port)],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = process.stdout.readline()  # its first line, once it has its settings
        process.kill()
        process.wait()
        return port, line

    port, line = start(free_port())
    assert f"links and the managers' page at http://127.0.0.1:{port} " in line, line


def test_the_services_own_address_is_one_a_browser_takes():
    from careloop.cli import own_address

    assert own_address("::1", 8010) == "http://[::1]:8010"
    assert own_address("0.0.0.0", 8010) == "http://127.0.0.1:8010"
    assert own_address("127.0.0.1", 8010) == "http://127.0.0.1:8010"
