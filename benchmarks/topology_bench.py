"""The capacity figures of docs/topology.md, each against a baseline from the same run.

Replies: signed SMS webhooks from 100 concurrent senders into one service instance on the
SQLite inbox (the baseline), one on the PostgreSQL inbox, and three on PostgreSQL behind
HAProxy; then the PostgreSQL inbox is counted (every acknowledged reply must be there).
Dispatch: care actions per second through each live sender (Twilio SMS, Twilio voice, SendGrid
email) to a local fake answering after 10 ms, against sequential SDK calls to the same fake.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import send_bench, service_bench
from benchmarks.service_bench import running
from careloop.stack import stat_fields
from inbox.inbox import Inbox
from tests.service_helpers import PUBLIC_URL

REPLIES = int(os.environ.get("CARELOOP_BENCH_CLUSTER_WEBHOOKS", "10000"))
ACTIONS = int(os.environ.get("CARELOOP_BENCH_CHANNEL_ACTIONS", "5000"))
BASELINE_SENDS = 300
LATENCY = 0.010
POSTGRES = os.environ.get("CARELOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _service_env(home: Path, inbox_url: str | None) -> dict[str, str]:
    env = service_bench.service_env(home)
    return {**env, "CARELOOP_INBOX_URL": inbox_url} if inbox_url else env


@contextmanager
def instances(
    home: Path, inbox_url: str | None, count: int, pids: list[int] | None = None
) -> Iterator[list[int]]:
    """``count`` service processes on the inbox; their ports (their pids into ``pids``)."""
    ports = [service_bench._port() for _ in range(count)]
    home.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for n, port in enumerate(ports):
            command = [sys.executable, "-m", "careloop.cli", "serve", "--port", str(port)]
            env = _service_env(home / f"i{n}", inbox_url)
            stack.enter_context(running(command, port, env, home / f"service{n}.log", pids))
        yield ports


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = stat_fields(Path(f"/proc/{pid}/stat"))
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (backends, WAL writer, ...)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().split(" (", 1)[1].startswith("postgres"):
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found


def measured_cpu(url: str, prefix: str, pids: list[int]) -> tuple[Any, float, float]:
    """The load's result, and the CPU milliseconds per reply of the services and PostgreSQL."""
    service_before, database_before = cpu_seconds(pids), _database_cpu()
    result = service_bench.measure(url, prefix)
    replies = len(result.acknowledged)
    service_ms = (cpu_seconds(pids) - service_before) * 1000 / replies
    database_after = _database_cpu()
    used = sum(cpu - database_before.get(pid, 0.0) for pid, cpu in database_after.items())
    return result, service_ms, used * 1000 / replies


def _database_cpu() -> dict[int, float]:
    """CPU so far of each PostgreSQL process; a backend that starts later counts from 0."""
    return {pid: _or_zero(pid) for pid in postgres_pids()}


def _or_zero(pid: int) -> float:
    try:
        return cpu_seconds([pid])
    except (OSError, IndexError):
        return 0.0  # a backend that ended meanwhile


@contextmanager
def balancer(home: Path, ports: list[int]) -> Iterator[str]:
    """HAProxy in front of ``ports``, as the tests run it, once it answers."""
    from tests.test_service_cluster import start_haproxy

    folder = home / f"haproxy-{ports[0]}"
    folder.mkdir(parents=True, exist_ok=True)
    process, port, _ = start_haproxy(folder, ports)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def reply_rates(home: Path) -> list[str]:
    from tests.postgres import fresh_schema

    service_bench.REQUESTS = REPLIES
    with instances(home / "sqlite", None, 1) as ports:
        sqlite = service_bench.measure(f"http://127.0.0.1:{ports[0]}", "SMq")
    with fresh_schema(POSTGRES) as url:
        with instances(home / "pg1", url, 1) as ports:
            one = service_bench.measure(f"http://127.0.0.1:{ports[0]}", "SMp")
            with balancer(home, ports) as lb:
                behind = service_bench.measure(lb, "SMh")
        pids: list[int] = []
        with instances(home / "pg3", url, 3, pids) as ports, balancer(home, ports) as lb:
            three, service_ms, database_ms = measured_cpu(lb, "SMt", pids)
        stored = {i.dedupe_key for batch in Inbox(url).after(0) for i in batch}
    acknowledged = one.acknowledged | behind.acknowledged | three.acknowledged
    lost = len(acknowledged - stored)
    return [
        f"replies, one instance, SQLite inbox (baseline): {sqlite.rate:,.0f}/s "
        f"(p50 {sqlite.p50_ms:.1f} ms, p99 {sqlite.p99_ms:.1f} ms)",
        f"replies, one instance, PostgreSQL inbox: {one.rate:,.0f}/s = "
        f"{one.rate / sqlite.rate:.2f}x (p50 {one.p50_ms:.1f} ms, p99 {one.p99_ms:.1f} ms)",
        f"replies, one instance behind HAProxy, PostgreSQL inbox: {behind.rate:,.0f}/s = "
        f"{behind.rate / one.rate:.2f}x direct (p50 {behind.p50_ms:.1f} ms, "
        f"p99 {behind.p99_ms:.1f} ms)",
        f"replies, three instances behind HAProxy, PostgreSQL inbox: {three.rate:,.0f}/s = "
        f"{three.rate / behind.rate:.2f}x one instance behind it (p50 {three.p50_ms:.1f} ms, "
        f"p99 {three.p99_ms:.1f} ms), on {os.cpu_count()} cores shared with the load, "
        "HAProxy and PostgreSQL",
        f"replies, CPU per reply (three instances): services {service_ms:.3f} ms, PostgreSQL "
        f"{database_ms:.3f} ms: one core carries {1000 / service_ms:,.0f} replies/s of service "
        f"work and {1000 / database_ms:,.0f} of inbox writes",
        f"replies, PostgreSQL inbox: {len(acknowledged):,} acknowledged, {lost} missing",
    ]


def sequential(kind: str, url: str) -> float:
    """One SDK call per message, one after another: the baseline."""
    start = time.perf_counter()
    if kind == "email":
        from sendgrid import SendGridAPIClient
        from sendgrid.helpers.mail import Mail

        from tests.fakes import SENDGRID_KEY

        client = SendGridAPIClient(SENDGRID_KEY, host=url)
        for n in range(BASELINE_SENDS):
            client.send(Mail("care@example.com", f"c{n}@example.com", "care", "hello"))
    else:
        from twilio.rest import Client

        from tests.fakes import ACCOUNT_SID
        from tests.fakes import AUTH_TOKEN as FAKE_TOKEN

        twilio = Client(ACCOUNT_SID, FAKE_TOKEN)
        twilio.api.base_url = url
        for n in range(BASELINE_SENDS):
            to, sender = f"+1212{n:07d}", "+15550001111"
            if kind == "sms":
                twilio.messages.create(to=to, from_=sender, body="hello")
            else:
                twilio.calls.create(to=to, from_=sender, url=f"{PUBLIC_URL}/twiml")
    return BASELINE_SENDS / (time.perf_counter() - start)


def dispatched(
    kind: str, url: str, home: Path, actions: int = ACTIONS, sender_type: str | None = None
) -> float:
    from campaigns.channels.factory import get_provider
    from campaigns.dispatch import dispatch
    from tests.fakes import SENDGRID_KEY
    from warehouse.db import connect

    path = home / f"dispatch-{kind}.duckdb"
    path.unlink(missing_ok=True)
    settings = send_bench._live_settings(
        home,
        url,
        None,
        8,  # careloop's default concurrency per sender
        sendgrid_base_url=url,
        sendgrid_api_key=SENDGRID_KEY,
        public_url=PUBLIC_URL,
        voice_rate=1_000_000,
        **({"sms_rate": None, "sms_sender_type": sender_type} if sender_type else {}),
    )
    con = connect(path)
    now = datetime.now(UTC)
    send_bench._queue(con, actions, now, channel=kind)
    start = time.perf_counter()
    figures = dispatch(con, get_provider(settings), now=now, batch_size=1000)
    elapsed = time.perf_counter() - start
    con.close()
    assert figures.sent[kind] == actions, figures
    return (actions - 1) / elapsed  # the first goes at once; a cap paces the ones after it


def dispatch_rates(home: Path) -> list[str]:
    lines = []
    for kind, server in (("sms", "twilio"), ("voice", "twilio"), ("email", "sendgrid")):
        with send_bench.fake_provider(server, LATENCY) as url:
            baseline = sequential(kind, url)
        with send_bench.fake_provider(server, LATENCY) as url:
            ours = dispatched(kind, url, home)
        lines.append(
            f"dispatch {kind}: {ACTIONS:,} actions at {ours:,.0f}/s = {ours / baseline:.1f}x "
            f"sequential SDK calls ({baseline:,.0f}/s), fake answering after "
            f"{LATENCY * 1000:.0f} ms"
        )
    return lines


# An SMS sender's throughput, which dispatch holds to (segments per second).
SENDER_TYPES = {"long_code": 1.0, "toll_free": 3.0, "short_code": 100.0}
SENDER_SECONDS = 10  # each type sends what its cap allows in about this long


def sender_type_rates(home: Path) -> list[str]:
    lines = []
    with send_bench.fake_provider("twilio", LATENCY) as url:
        for sender_type, cap in SENDER_TYPES.items():
            count = int(cap * SENDER_SECONDS) + 1
            rate = dispatched("sms", url, home, count, sender_type)
            lines.append(
                f"dispatch sms from a {sender_type.replace('_', ' ')}: {count} one-segment "
                f"actions, {rate:.2f}/s after the first = {rate / cap:.2f}x its {cap:g} "
                "segments/s"
            )
    return lines


def main(home: Path) -> list[str]:
    home = home / "topology-bench"
    shutil.rmtree(home, ignore_errors=True)  # every inbox and warehouse new, every run
    home.mkdir(parents=True)
    return [*reply_rates(home), *dispatch_rates(home), *sender_type_rates(home)]


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    print("\n".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".careloop/bench"))))
