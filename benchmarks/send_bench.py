"""100,000 care actions through the live Twilio provider to a local fake Twilio server.

The fake runs in its own process and answers each request after 10 ms (a fraction of Twilio's
real latency, and no rate cap). Baseline, same server, same run: plain sequential
``client.messages.create`` calls. Then, with a cap set, the highest number of messages the
server accepted in any one-second window; with 3-segment messages, the segments per second
the server saw against a cap below one message's size; and a 503 storm, in requests per
action. Targets: at least 5x the baseline; the cap never exceeded; a storm costs at most the
breaker's threshold in requests, not several per action.

Then the sandbox (the embedded provider: every send logged and its receipt put in the inbox),
dispatched in process as `careloop dispatch` does it (its batches of 10,000, the inbox's news
watched between them), on a small outbox (20,000 actions due, nothing else) and on a large one
(200,000 due over 3,000,000 settled sends, ``CARELOOP_BENCH_SANDBOX_HISTORY``): actions a
second on each, and the large against the small. Targets: 10,000 actions a second or more on
both (issue 20), so the ratio about 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twilio.rest import Client

from tests.fakes import ACCOUNT_SID, AUTH_TOKEN

LATENCY = 0.010
ACTIONS = int(os.environ.get("CARELOOP_BENCH_SEND_ACTIONS", "100000"))
BASELINE_SENDS = 1_000
CAPPED_RATE = 50
CAPPED_ACTIONS = 400
SEGMENT_CAP = 2.0  # segments/s, below one message's 3 segments: the old clipping's blind spot
SEGMENT_MESSAGES = 6
STORM_ACTIONS = 500
IN_FLIGHT = 600
LIST_LATENCY = 0.05
SANDBOX_SMALL = 20_000
SANDBOX_DUE = 200_000
SANDBOX_HISTORY = int(os.environ.get("CARELOOP_BENCH_SANDBOX_HISTORY", "3000000"))
SANDBOX_TARGET = 10_000  # actions a second
SANDBOX_NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, inside the window


@contextmanager
def fake_provider(kind: str = "twilio", latency: float = LATENCY) -> Iterator[str]:
    """The fake provider (``twilio`` or ``sendgrid``) in its own process; its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", kind, str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    url = server.stdout.readline().strip()
    try:
        yield url
    finally:
        server.kill()
        server.wait()


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_stats", timeout=30) as response:
        return dict(json.loads(response.read()))


def sequential_baseline(url: str) -> float:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = url
    start = time.perf_counter()
    for n in range(BASELINE_SENDS):
        client.messages.create(to=f"+1212{n:07d}", from_="+15550001111", body=f"baseline {n}")
    return BASELINE_SENDS / (time.perf_counter() - start)


def careloop_rate(url: str, home: Path, count: int, rate: float | None) -> float:
    """Dispatch ``count`` queued SMS actions through the live provider; return actions/s."""
    from campaigns.channels.factory import get_provider
    from campaigns.dispatch import dispatch
    from warehouse.db import connect

    path = home / "send.duckdb"
    path.unlink(missing_ok=True)
    settings = _live_settings(home, url, rate, 16)
    con = connect(path)
    now = datetime.now(UTC)
    _queue(con, count, now)
    start = time.perf_counter()
    figures = dispatch(con, get_provider(settings), now=now, batch_size=1000)
    elapsed = time.perf_counter() - start
    con.close()
    assert figures.sent["sms"] == count, figures
    return count / elapsed


def segment_rate(home: Path, cap: float, messages: int) -> tuple[int, float]:
    """Send ``messages`` long zh-CN SMS at ``cap`` segments/s; segments per message and the
    rate the server saw (what followed the first message, over the time it took)."""
    from tests.fakes import TwilioApi, serve

    with serve(TwilioApi()) as (url, twilio):
        body = "尊敬的客户，感谢您长期以来的支持与信任，" * 8  # 3 segments in UCS-2
        _dispatch_bodies(home, url, [body] * messages, cap, concurrency=4)
        sent = sorted((m["_at"], int(m["num_segments"])) for m in twilio.state.messages)
    segments = sent[0][1]
    return segments, segments * (len(sent) - 1) / (sent[-1][0] - sent[0][0])


def storm_requests(home: Path, actions: int) -> tuple[int, str]:
    """Every request answered 503: how many requests the run made, and why it stopped."""
    from campaigns.dispatch import DispatchHaltedError
    from tests.fakes import Fault, TwilioApi, serve

    with serve(TwilioApi()) as (url, twilio):
        twilio.state.faults.extend(Fault(status=503) for _ in range(actions * 10))
        try:
            _dispatch_bodies(home, url, ["storm"] * actions, None, concurrency=8)
            reason = "finished"
        except DispatchHaltedError as halted:
            reason = str(halted).split(";")[0]
        return len([r for r in twilio.state.requests if r.method == "POST"]), reason


def restart_settle(home: Path, in_flight: int, latency: float) -> tuple[float, float]:
    """Seconds to settle ``in_flight`` unconfirmed SMS after a crash: one list request per
    action in turn (the baseline), and careloop's settle (per recipient, concurrently)."""
    from campaigns.channels.base import OutboundMessage
    from campaigns.channels.factory import get_provider
    from tests.fakes import TwilioApi, serve

    with serve(TwilioApi()) as (url, twilio):
        twilio.state.list_latency = latency
        provider = get_provider(_live_settings(home, url, None, 8)).by_channel["sms"]
        claimed = datetime.now(UTC)
        pending = [
            OutboundMessage(f"A{n}", f"k{n}", "sms", f"+1646{n:07d}", None, "hi", "en", claimed)
            for n in range(in_flight)
        ]
        start = time.perf_counter()
        for message in pending:
            provider.client().messages.list(to=message.recipient, limit=50)
        baseline = time.perf_counter() - start
        start = time.perf_counter()
        provider.settle(pending, claimed)
        return baseline, time.perf_counter() - start


def _dispatch_bodies(
    home: Path, url: str, bodies: list[str], rate: float | None, concurrency: int
) -> None:
    from campaigns.channels.factory import get_provider
    from campaigns.dispatch import dispatch
    from warehouse.db import connect

    path = home / "send-small.duckdb"
    path.unlink(missing_ok=True)
    settings = _live_settings(home, url, rate, concurrency)
    con = connect(path)
    now = datetime.now(UTC)
    _queue(con, len(bodies), now, bodies)
    try:
        dispatch(con, get_provider(settings), now=now, batch_size=1000)
    finally:
        con.close()


def _live_settings(
    home: Path, url: str, rate: float | None, concurrency: int, **overrides: Any
) -> Any:
    """Live providers pointed at the fake at ``url``; ``overrides`` replace any setting."""
    from core.settings import load_settings

    settings: dict[str, Any] = {
        "home": home,
        "provider": "live",
        "twilio_base_url": url,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": "+15550001111",
        "sendgrid_api_key": "unused",
        "secret_blocks": False,
        "provider_concurrency": concurrency,
        "sms_rate": rate or 1_000_000,
    }
    return load_settings(**{**settings, **overrides})


RECIPIENTS = {
    "email": "'c' || i || '@example.com'",
    "sms": "'+1646' || lpad(i::VARCHAR, 7, '0')",
    "voice": "'+1646' || lpad(i::VARCHAR, 7, '0')",
}


def _queue(
    con: Any, count: int, now: datetime, bodies: list[str] | None = None, channel: str = "sms"
) -> None:
    con.execute(
        f"""
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, tier, locale, channel, recipient, body, survey,
            status, scheduled_at, created_at, updated_at, segments)
        SELECT 'ca_' || i, 'bench|' || i, 'bench', 'bench', 'S' || i, 'o', 1, 'standard',
               'en', ?, {RECIPIENTS[channel]},
               coalesce(?[i + 1], 'Your care message ' || i), true, 'queued', ?, ?, ?, 1
        FROM range(?) t(i)""",
        [channel, bodies or [], now - timedelta(hours=1), now, now, count],
    )


OUTBOX_COLUMNS = """action_id, idempotency_key, run_id, campaign_id, subscriber_id, occasion,
    round, tier, locale, channel, recipient, subject, body, survey, status, scheduled_at,
    created_at, updated_at, segments, timezone, window_start, window_end, expires_at, sent_at,
    claimed_at, provider_id, attempts"""


def _outbox_rows(kind: str, status: str, stamp: str) -> str:
    """Actions shaped like a day's birthday care: 6 in 10 SMS, 3 email, 1 voice; one in 50
    customers in New York (outside their window at noon in Shanghai); keys and customers
    spread like the planner's hashes. ``stamp`` is the scheduled time."""
    channel = "CASE WHEN i % 10 < 6 THEN 'sms' WHEN i % 10 < 9 THEN 'email' ELSE 'voice' END"
    return f"""
    SELECT 'ca_' || md5('{kind}' || i), 'bench|{kind}|' || i, 'run', 'birthday',
        'S' || hash(i, '{kind}') % 10000000, '{kind}-' || i, 1, 'standard', 'en', {channel},
        CASE WHEN {channel} = 'email' THEN 'c' || i || '@example.com'
             ELSE '+1646' || lpad((i % 10000000)::VARCHAR, 7, '0') END,
        CASE WHEN {channel} = 'email' THEN 'Happy birthday' END,
        'Happy birthday, dear customer ' || i, true, '{status}', {stamp},
        {stamp} - INTERVAL 3 HOUR, {stamp}, 1,
        CASE WHEN i % 50 = 0 THEN 'America/New_York' ELSE 'Asia/Shanghai' END,
        CASE WHEN {channel} <> 'email' THEN TIME '08:00' END,
        CASE WHEN {channel} <> 'email' THEN TIME '21:00' END, {stamp} + INTERVAL 20 HOUR"""


def sandbox_outbox(con: Any, due: int, history: int) -> None:
    """``history`` settled sends over 90 days (with an opt-out for 1 in 100 of their
    customers), then ``due`` actions queued this morning; set-based, in creation order."""
    if history:
        spread = f"$start + to_seconds((i * {86400 * 90 // history})::BIGINT)"
        con.execute(
            f"""INSERT INTO care_actions ({OUTBOX_COLUMNS})
            SELECT * EXCLUDE (i) FROM ({_outbox_rows("old", "sent", "stamp")}, stamp, stamp,
                'SM' || md5('old' || i), 1, i
            FROM (SELECT i, {spread} AS stamp FROM range($n) r(i)) ORDER BY i)""",
            {"n": history, "start": SANDBOX_NOW - timedelta(days=91)},
        )
        con.execute(
            """INSERT INTO opt_outs SELECT 'S' || hash(i, 'old') % 10000000, 'sms', 'opt_out',
                $at, 'sms_stop', 'h' || i FROM range(0, $n, 100) r(i)
            ON CONFLICT (evidence_key, channel) DO NOTHING""",
            {"n": history, "at": SANDBOX_NOW - timedelta(days=30)},
        )
        con.execute("CHECKPOINT")
    con.execute(
        f"""INSERT INTO care_actions ({OUTBOX_COLUMNS})
        SELECT * EXCLUDE (i) FROM ({_outbox_rows("new", "queued", "$due")}, NULL, NULL, NULL,
            0, i FROM range($n) r(i) ORDER BY i)""",
        {"n": due, "due": SANDBOX_NOW - timedelta(hours=2)},
    )
    con.execute("CHECKPOINT")


def sandbox_rate(home: Path, due: int, history: int) -> tuple[float, int]:
    """Dispatch ``due`` actions on the sandbox over ``history``; actions/s and how many."""
    import pandas  # noqa: F401 - loaded, as in the stack's warm runner (careloop.runner.PRELOAD)

    from campaigns.channels.sandbox import SandboxProvider
    from campaigns.dispatch import dispatch
    from cases.collect import NewsWatch
    from inbox.inbox import Inbox
    from warehouse.db import connect

    where = home / f"sandbox-{due}-{history}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    con = connect(where / "warehouse.duckdb")
    try:
        sandbox_outbox(con, due, history)
        inbox = Inbox(where / "inbox.sqlite")
        sandbox = SandboxProvider(where / "sandbox.sqlite", inbox)
        watch = NewsWatch(lambda: con, inbox, timedelta(hours=72))
        start = time.perf_counter()
        figures = dispatch(
            con, sandbox, now=SANDBOX_NOW, batch_size=sandbox.max_batch, refresh=watch
        )
        elapsed = time.perf_counter() - start
    finally:
        con.close()
    shutil.rmtree(where, ignore_errors=True)
    settled = sum(figures.sent.values()) + sum(figures.failed.values())
    return settled / elapsed, settled


def sandbox_lines(home: Path) -> list[str]:
    small, small_n = sandbox_rate(home, SANDBOX_SMALL, 0)
    large, large_n = sandbox_rate(home, SANDBOX_DUE, SANDBOX_HISTORY)

    def met(rate: float) -> str:
        return "met" if rate >= SANDBOX_TARGET else "MISS"

    return [
        f"sandbox dispatch, small outbox ({small_n:,} sent of {SANDBOX_SMALL:,} due, no "
        f"history): {small:,.0f} actions/s (target >= {SANDBOX_TARGET:,}: {met(small)})",
        f"sandbox dispatch, large outbox ({large_n:,} sent of {SANDBOX_DUE:,} due over "
        f"{SANDBOX_HISTORY:,} settled): {large:,.0f} actions/s = {large / small:.2f}x the "
        f"small outbox (target >= {SANDBOX_TARGET:,}: {met(large)})",
    ]


def main(home: Path) -> list[str]:
    home.mkdir(parents=True, exist_ok=True)
    with fake_provider() as url:
        baseline = sequential_baseline(url)
        ours = careloop_rate(url, home, ACTIONS, None)
        uncapped = stats(url)
    with fake_provider() as url:
        careloop_rate(url, home, CAPPED_ACTIONS, CAPPED_RATE)
        capped = stats(url)
    segments, seen_rate = segment_rate(home, SEGMENT_CAP, SEGMENT_MESSAGES)
    storm, stopped = storm_requests(home, STORM_ACTIONS)
    one_by_one, settled = restart_settle(home, IN_FLIGHT, LIST_LATENCY)
    sandbox = sandbox_lines(home)
    return [
        f"send: sequential messages.create {baseline:,.0f}/s; careloop dispatch of "
        f"{ACTIONS:,} actions {ours:,.0f}/s = {ours / baseline:.1f}x (target >= 5); "
        f"server accepted {uncapped['accepted'] - BASELINE_SENDS:,} for "
        f"{uncapped['recipients'] - BASELINE_SENDS:,} numbers",
        f"send cap {CAPPED_RATE}/s: busiest one-second window at the server "
        f"{capped['busiest_second']} messages (target <= {CAPPED_RATE}), "
        f"{capped['accepted']} sent",
        f"send cap {SEGMENT_CAP:g} segments/s, {SEGMENT_MESSAGES} messages of {segments} "
        f"segments: the server saw {seen_rate:.2f} segments/s = {seen_rate / SEGMENT_CAP:.2f}x "
        "the cap (target <= 1.05)",
        f"503 storm, {STORM_ACTIONS} actions: {storm} requests = {storm / STORM_ACTIONS:.3f} "
        f"per action ({stopped})",
        f"restart with {IN_FLIGHT} SMS in flight, {LIST_LATENCY * 1000:.0f} ms per list "
        f"request: one request per action in turn {one_by_one:.1f} s; careloop settle "
        f"{settled:.1f} s = {one_by_one / settled:.1f}x faster",
        *sandbox,
    ]


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if sys.argv[1:2] == ["sandbox"]:  # this part alone
        print(
            "\n".join(sandbox_lines(Path(sys.argv[2] if len(sys.argv) > 2 else ".careloop/bench")))
        )
        sys.exit()
    print("\n".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".careloop/bench"))))
