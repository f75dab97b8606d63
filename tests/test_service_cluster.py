"""Three service instances on one PostgreSQL inbox behind HAProxy (Debian's), under load, one
killed mid-load: every acknowledged reply reaches the warehouse exactly once."""

import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import ExitStack
from datetime import timedelta

import pytest
import requests

from cases.collect import collect
from inbox.inbox import Inbox
from tests.test_prefect_server import until
from tests.test_service_process import fire, on_a_free_port, start_on_a_free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# What docs/topology.md recommends: round robin, health checks, and a request that found its
# instance dead (refused, or cut off before an answer) retried on another. A retried reply
# that the dead instance had already stored counts once: the inbox keys it by its SID.
# Slow clients end at the balancer: a head must arrive within `timeout http-request`, an idle
# client is dropped after `timeout client`, and one address holds at most {per_source}
# connections (a stick table counts them).
CONFIG = """
global
    maxconn 4096
    stats socket {stats} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout http-request {head_timeout}
    timeout http-keep-alive 5s
    timeout server 30s
    timeout queue 10s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend care
    bind 127.0.0.1:{port}
    maxconn 2000
    stick-table type ip size 100k expire 60s store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(0) gt {per_source} }}
    default_backend services
backend services
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


# As docs/topology.md gives them.
DOCUMENTED = {"head_timeout": "10s", "per_source": 100}


def start_haproxy(tmp_path, ports, **limits):
    """HAProxy in front of ``ports`` once it answers: (process, port, stats socket)."""
    return on_a_free_port(lambda port: _start_haproxy(tmp_path, ports, port, limits))


def _start_haproxy(tmp_path, ports, port, limits):
    stats = (tmp_path / "haproxy.sock").resolve()  # HAProxy wants an absolute path
    servers = "\n".join(
        f"    server s{n} 127.0.0.1:{p} check inter 200ms fall 1 rise 2 maxconn 200"
        for n, p in enumerate(ports)
    )
    config = tmp_path / "haproxy.cfg"
    values = DOCUMENTED | limits
    config.write_text(CONFIG.format(stats=stats, port=port, servers=servers, **values))
    process = subprocess.Popen([HAPROXY, "-f", str(config), "-db"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process, port, stats
        except requests.ConnectionError:
            threading.Event().wait(0.05)  # not listening yet: ask again shortly
    process.kill()
    raise RuntimeError("haproxy did not start")


def ask_haproxy(stats, command):
    """What HAProxy's stats socket answers to ``command``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(command.encode() + b"\n")
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()


def connections_counted(stats):
    """The connections the frontend's stick table counts for 127.0.0.1 (its conn_cur)."""
    for line in ask_haproxy(stats, "show table care").splitlines():
        if "key=127.0.0.1" in line:
            return int(line.split("conn_cur=")[1].split()[0])
    return 0


def served_per_instance(stats):
    """Requests each instance got, and its state, from HAProxy's own statistics."""
    text = ask_haproxy(stats, "show stat")
    header, *rows = [line.split(",") for line in text.splitlines() if line]
    column = {name.lstrip("# "): i for i, name in enumerate(header)}
    return {
        row[column["svname"]]: (int(row[column["stot"]]), row[column["status"]])
        for row in rows
        if row[column["pxname"]] == "services" and row[column["svname"]].startswith("s")
    }


@pytest.mark.skipif(
    not shutil.which(HAPROXY), reason="needs Debian's haproxy (make test installs it)"
)
def test_three_instances_one_killed_mid_load_lose_no_acknowledged_reply(
    tmp_path, settings, con, postgres_inbox_url
):
    env = {"CARELOOP_INBOX_URL": postgres_inbox_url}
    services, ports, acknowledged, stop = [], [], set(), threading.Event()
    with ExitStack() as cleanup:
        cleanup.callback(_stop_all, services)
        for n in range(3):
            service, service_port = start_on_a_free_port(tmp_path / f"instance{n}", **env)
            services.append(service)
            ports.append(service_port)
        haproxy, port, stats = start_haproxy(tmp_path, ports)
        cleanup.callback(haproxy.terminate)
        cleanup.callback(stop.set)
        threads = fire(port, "SMc", acknowledged, stop, senders=12)
        until(lambda: len(acknowledged) >= 400, "load through the balancer")
        services[1].send_signal(signal.SIGKILL)  # mid-load, no warning
        services[1].wait()
        before_kill = len(acknowledged)
        until(lambda: len(acknowledged) >= before_kill + 400, "the survivors carrying on")
        stop.set()
        for thread in threads:
            thread.join()
        served = served_per_instance(stats)
    assert all(count > 50 for count, _ in served.values()), served
    assert served["s1"][1] == "DOWN" and served["s0"][1] == "UP"
    figures = collect(con, Inbox(postgres_inbox_url), reply_window=timedelta(hours=72))
    keys = [f"sms:{sid}" for sid in acknowledged]
    landed = con.execute(
        "SELECT dedupe_key, count(*) FROM inbound_messages WHERE dedupe_key IN"
        " (SELECT unnest(?)) GROUP BY 1",
        [keys],
    ).fetchall()
    evaluated = con.execute(
        "SELECT count(*), count(DISTINCT dedupe_key) FROM evaluations WHERE dedupe_key IN"
        " (SELECT unnest(?))",
        [keys],
    ).fetchone()
    assert len(landed) == len(acknowledged) and {n for _, n in landed} == {1}
    assert evaluated == (len(acknowledged), len(acknowledged))
    assert figures.drained >= len(acknowledged)


def _stop_all(services):
    for service in services:
        service.terminate()
        service.wait()


def test_the_documented_balancer_cuts_slow_heads_and_greedy_clients():
    """docs/topology.md gives the balancer these limits, line for line."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "topology.md").read_text()
    guard = CONFIG.format(stats="-", port="-", servers="", **DOCUMENTED)
    for line in guard.splitlines():
        if line.strip().startswith(("timeout", "maxconn", "stick-table", "tcp-request")):
            assert line in doc, f"docs/topology.md lacks {line.strip()!r}"


@pytest.mark.skipif(
    not shutil.which(HAPROXY), reason="needs Debian's haproxy (make test installs it)"
)
def test_haproxy_cuts_off_a_slow_head_and_a_clients_extra_connections(tmp_path, settings):
    from tests.test_service_process import attempt, closed_or_refused, raw_request

    with ExitStack() as cleanup:
        service, service_port = start_on_a_free_port(tmp_path / "instance")
        cleanup.callback(_stop_all, [service])
        balancer, port, stats = start_haproxy(
            tmp_path, [service_port], head_timeout="1s", per_source=3
        )
        cleanup.callback(lambda: (balancer.kill(), balancer.wait()))
        slow = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        cleanup.callback(slow.close)
        assert closed_or_refused(slow) in (None, 408)  # HAProxy answers 408 itself
        held = [raw_request(port, b"GET /healthz HTTP/1.1\r\n") for _ in range(3)]
        for sock in held:
            cleanup.callback(sock.close)
        # The kernel completes a connect before HAProxy accepts it (and its threads may
        # take them in any order): try the fourth only once the table counts all three.
        until(lambda: connections_counted(stats) == 3, "HAProxy counting the held three")
        extra = attempt(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_or_refused(extra) is None  # refused at the connection
        if extra:
            extra.close()
