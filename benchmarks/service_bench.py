"""The feedback service under signed inbound-SMS webhooks from 100 concurrent senders on
loopback, next to a bare endpoint of the same framework in the same run; then the inbox is
counted: every acknowledged reply must be there.

Targets: at least 40% of the bare endpoint's rate; p99 latency under 50 ms.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import requests

from inbox.inbox import Inbox
from tests.service_helpers import AUTH_TOKEN, PUBLIC_URL, SendGridSigner, sms_form, twilio_post
from tests.service_helpers import sid as twilio_sid

SENDERS = 100
REQUESTS = int(os.environ.get("CARELOOP_BENCH_WEBHOOKS", "20000"))
WARM_UP = 1000


@dataclass(frozen=True)
class LoadResult:
    rate: float
    p50_ms: float
    p99_ms: float
    acknowledged: set[str]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    command: list[str], port: int, env: dict[str, str], log: Path, pids: list[int] | None = None
) -> Iterator[str]:
    """The server in its own process, its output (the access log, one line a request) in
    ``log``: written as in production, kept off the terminal. Its pid goes to ``pids``."""
    handle = log.open("w")
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )
    if pids is not None:
        pids.append(process.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.post(f"{url}/webhooks/twilio/sms", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()
        handle.close()


def signed_requests(prefix: str) -> list[tuple[str, str, dict[str, str]]]:
    built = []
    for n in range(REQUESTS):
        sid = twilio_sid("SM", f"{prefix}{n:07d}")
        request = twilio_post(
            "/webhooks/twilio/sms", sms_form(sid, f"+8613{n % 10_000_000:09d}", str(n % 5 + 1))
        )
        built.append((sid, request["content"], request["headers"]))
    return built


async def drive(url: str, load: list[tuple[str, str, dict[str, str]]]) -> LoadResult:
    queue = iter(load)
    latencies: list[float] = []
    acknowledged: set[str] = set()
    connector = aiohttp.TCPConnector(limit=SENDERS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            for sid, body, headers in queue:
                start = time.perf_counter()
                async with session.post(
                    f"{url}/webhooks/twilio/sms", data=body, headers=headers
                ) as response:
                    await response.read()
                    if response.status == 200:
                        acknowledged.add(sid)
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return LoadResult(len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000, acknowledged)


def measure(url: str, prefix: str) -> LoadResult:
    """A warm-up round first (connections, caches, first-use imports), then the measured one."""
    warm = signed_requests(f"{prefix}w")[:WARM_UP]
    asyncio.run(drive(url, warm))
    result = asyncio.run(drive(url, signed_requests(prefix)))
    return LoadResult(
        result.rate, result.p50_ms, result.p99_ms, result.acknowledged | {sid for sid, _, _ in warm}
    )


HEALTH_PROBES = 300
ATTACKERS = 3
NINE_MB = 9 * 1024 * 1024


def _attack(port: int, stop: threading.Event, refused: list[int]) -> None:
    """Unauthenticated 9 MB bodies, over and over: half announced by Content-Length, half
    streamed in chunks with no length at all. Counts the refusals."""
    chunk = b"f=1&" * 16384  # 64 KB of form fields
    announce = True
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            length = f"Content-Length: {NINE_MB}" if announce else "Transfer-Encoding: chunked"
            sock.sendall(
                f"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n{length}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
            )
            try:
                for _ in range(NINE_MB // len(chunk)):
                    sock.sendall(chunk if announce else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass  # refused and hung up on: the point
            try:
                if b" 413 " in sock.recv(64):
                    refused.append(1)
            except OSError:
                pass
        announce = not announce


def _health_latency(url: str) -> tuple[float, float]:
    session = requests.Session()
    times = []
    for _ in range(HEALTH_PROBES):
        start = time.perf_counter()
        session.get(f"{url}/healthz", timeout=30).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 2], times[-1]


def health_under_attack(url: str) -> str:
    """/healthz latency alone, then while attackers send 9 MB bodies."""
    quiet = _health_latency(url)
    port = int(url.rsplit(":", 1)[1])
    stop, refused = threading.Event(), []
    attackers = [
        threading.Thread(target=_attack, args=(port, stop, refused)) for _ in range(ATTACKERS)
    ]
    for thread in attackers:
        thread.start()
    try:
        loud = _health_latency(url)
    finally:
        stop.set()
        for thread in attackers:
            thread.join()
    return (
        f"service /healthz: p50 {quiet[0]:.2f} ms, max {quiet[1]:.1f} ms alone; with "
        f"{ATTACKERS} clients sending 9 MB bodies ({len(refused)} refused with 413) p50 "
        f"{loud[0]:.2f} ms = {loud[0] / quiet[0]:.1f}x, max {loud[1]:.1f} ms"
    )


def service_env(home: Path) -> dict[str, str]:
    """What a service process needs: its home and the providers' verification keys."""
    return {
        "CARELOOP_HOME": str(home),
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SendGridSigner().public_key,
        "CARELOOP_PUBLIC_URL": PUBLIC_URL,
    }


def main(home: Path) -> list[str]:
    home = home / "service-bench"
    if home.exists():
        for item in home.iterdir():
            item.unlink()
    home.mkdir(parents=True, exist_ok=True)
    env = service_env(home)
    bare_port, service_port = _port(), _port()
    with running(
        [sys.executable, "-m", "benchmarks.bare_app", str(bare_port)],
        bare_port,
        env,
        home / "bare.log",
    ) as url:
        bare = measure(url, "SMb")
    with running(
        [sys.executable, "-m", "careloop.cli", "serve", "--port", str(service_port)],
        service_port,
        env,
        home / "service.log",
    ) as url:
        ours = measure(url, "SMr")
        attacked = health_under_attack(url)
    stored = {i.dedupe_key for batch in Inbox(home / "inbox.sqlite").after(0) for i in batch}
    lost = len(ours.acknowledged - stored)
    return [
        f"service: {SENDERS} senders, {REQUESTS:,} signed SMS webhooks each; bare endpoint "
        f"{bare.rate:,.0f}/s (p50 {bare.p50_ms:.1f} ms, p99 {bare.p99_ms:.1f} ms); careloop "
        f"{ours.rate:,.0f}/s = {ours.rate / bare.rate:.0%} of bare (target >= 40%), "
        f"p50 {ours.p50_ms:.1f} ms, p99 {ours.p99_ms:.1f} ms (target < 50 ms)",
        f"service inbox: {len(ours.acknowledged):,} acknowledged, {len(stored):,} stored, "
        f"{lost} lost",
        attacked,
    ]


if __name__ == "__main__":
    print("\n".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".careloop/bench"))))
