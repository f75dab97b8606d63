"""A dispatcher killed (SIGKILL) many times over, at moments chosen by what the servers have
seen, then resumed: every care action, SMS, email and call, reaches its (fake) provider
exactly once. Twilio keeps what it accepted queued (no date_sent, as for real) the whole time,
and SendGrid's events reach the inbox as its webhook would deliver them."""

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta

from inbox.inbox import Inbox
from tests.factories import add_store, add_subscriber
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, SENDGRID_KEY, SendGridApi, TwilioApi, serve
from tests.test_planning import plan
from warehouse.db import connect

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
PER_CHANNEL = 120
KILL_ROUNDS = 18
SANDBOX_KILL_ROUNDS = 8
CHILD = """
import sys
from datetime import datetime
from core.settings import load_settings
from flows.common import send_due
send_due(load_settings(), datetime.fromisoformat(sys.argv[1]), simulated=False)
"""


def customers(con):
    add_store(con)
    for n in range(PER_CHANNEL):
        add_subscriber(con, f"S{n}", email=None, voice_consent=False)  # sms
        add_subscriber(con, f"S{10_000 + n}", phone=None)  # email
        add_subscriber(con, f"S{20_000 + n}", email=None, sms_consent=False)  # voice


class Servers:
    def __init__(self, twilio, sendgrid):
        self.twilio, self.sendgrid = twilio, sendgrid
        self.first_send_after: list[float] = []  # seconds from a run's start to its first send

    def accepted(self):
        return len(self.twilio.state.messages) + len(self.sendgrid.state.messages)

    def wait_for(self, count, child):
        """Until the servers have accepted ``count`` in all, or the child has ended."""
        while child.poll() is None:
            if self.twilio.state.wait_for(count - len(self.sendgrid.state.messages), 0.05):
                return True
        return False


def run_child(env, now, servers=None, kill_after=None):
    """One dispatch run as production runs it (its sending turn, the warehouse in turns);
    with ``kill_after``, SIGKILLed once the servers accepted that many more messages."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", CHILD, now.isoformat()], env=env)
    if kill_after is not None:
        before = servers.accepted()
        if servers.wait_for(before + 1, child):
            servers.first_send_after.append(time.monotonic() - started)
        if servers.wait_for(before + kill_after, child):
            child.kill()
            child.wait()
            return True
    assert child.wait(timeout=300) == 0
    return False


def duplicates_and_lost(sent_to, recipients):
    per = Counter(sent_to)
    return sum(n - 1 for n in per.values()), len(set(recipients) - set(per))


def test_killed_dispatch_sends_each_action_exactly_once(con, settings):
    customers(con)
    plan(con, settings)
    expected = dict(
        con.execute("SELECT channel, list(recipient) FROM care_actions GROUP BY ALL").fetchall()
    )
    con.close()
    inbox = Inbox(settings.inbox_path)
    with serve(TwilioApi()) as (twilio_url, twilio), serve(SendGridApi()) as (sg_url, sendgrid):
        twilio.state.latency = sendgrid.state.latency = 0.02
        twilio.state.auto_release = False  # queued at Twilio, no date_sent, all along
        sendgrid.state.event_sink = lambda events: inbox.put_many(
            ("status", e["sg_event_id"], datetime.now(UTC), e) for e in events
        )
        env = {
            **os.environ,
            "CARELOOP_HOME": str(settings.home),
            "CARELOOP_PROVIDER": "live",
            "CARELOOP_TWILIO_BASE_URL": twilio_url,
            "CARELOOP_SENDGRID_BASE_URL": sg_url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": "+15550001111",
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "CARELOOP_SECRET_BLOCKS": "false",
            "CARELOOP_SMS_RATE": "1000",
            "CARELOOP_VOICE_RATE": "1000",
            "CARELOOP_PROVIDER_CONCURRENCY": "2",
            "CARELOOP_DISPATCH_BATCH_SIZE": "5",
        }
        servers = Servers(twilio, sendgrid)
        rng = random.Random(20261123)
        kills = 0
        for round_ in range(KILL_ROUNDS):  # each run a few seconds later than the one before
            at = NOW + timedelta(seconds=5 * round_)
            kills += run_child(env, at, servers, kill_after=rng.randint(1, 10))
        sent_before_resume = servers.accepted()
        for minutes in (20, 21, 22):  # past every grace; email needs the stream to show itself
            run_child(env, NOW + timedelta(minutes=minutes))
        sms = [m["to"] for m in twilio.state.messages if m["_kind"] == "Messages"]
        calls = [m["to"] for m in twilio.state.messages if m["_kind"] == "Calls"]
        mails = [m["to"] for m in sendgrid.state.messages]
    assert kills == KILL_ROUNDS, "every run must be killed mid-run, with work left"
    # a killed run's turns die with it: the next one starts sending at once, not after a lease
    assert len(servers.first_send_after) == KILL_ROUNDS
    assert max(servers.first_send_after) < 60, servers.first_send_after
    assert 0 < sent_before_resume < 3 * PER_CHANNEL
    assert duplicates_and_lost(sms, expected["sms"]) == (0, 0)
    assert duplicates_and_lost(calls, expected["voice"]) == (0, 0)
    assert duplicates_and_lost(mails, expected["email"]) == (0, 0)
    con = connect(settings.warehouse_path)
    statuses = dict(
        con.execute("SELECT status, count(*) FROM care_actions GROUP BY ALL").fetchall()
    )
    con.close()
    assert statuses == {"sent": 3 * PER_CHANNEL}


def sandbox_log(path):
    """The sandbox's log: action id -> provider id, and how many rows it holds (none while
    the first run is still creating it)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as log:
            rows = log.execute("SELECT action_id, provider_id FROM sent").fetchall()
    except sqlite3.OperationalError:  # no file, or no table, yet
        return {}, 0
    return dict(rows), len(rows)


def test_killed_sandbox_dispatch_loses_nothing_and_records_each_send_once(con, settings):
    """The sandbox is sent inside the batch's transaction, unclaimed (it drops a repeated
    idempotency key): a run killed after the sandbox took a batch and before the warehouse
    committed leaves that batch queued, and the next run's send of it is the same send."""
    customers(con)
    plan(con, settings)
    actions = {row[0] for row in con.execute("SELECT action_id FROM care_actions").fetchall()}
    con.close()
    env = {
        **os.environ,
        "CARELOOP_HOME": str(settings.home),
        "CARELOOP_PROVIDER": "sandbox",
        "CARELOOP_DISPATCH_BATCH_SIZE": "5",
    }
    rng = random.Random(20261202)
    kills = 0
    for round_ in range(SANDBOX_KILL_ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, (NOW + timedelta(seconds=round_)).isoformat()], env=env
        )
        target = sandbox_log(settings.sandbox_path)[1] + rng.randint(1, 15)
        while child.poll() is None and sandbox_log(settings.sandbox_path)[1] < target:
            # a pause between reads: the wait is on the log's growth or the run's end, not time
            time.sleep(0.001)
        if child.poll() is None:
            child.kill()
            kills += 1
        child.wait()
    run_child(env, NOW + timedelta(minutes=1))  # to the end
    log, rows = sandbox_log(settings.sandbox_path)
    con = connect(settings.warehouse_path)
    recorded = dict(con.execute("SELECT action_id, provider_id FROM care_actions").fetchall())
    statuses = dict(con.execute("SELECT status, count(*) FROM care_actions GROUP BY 1").fetchall())
    con.close()
    receipts = Inbox(settings.inbox_path).count()
    assert kills >= SANDBOX_KILL_ROUNDS // 2, "most runs must be killed mid-run, with work left"
    # a run killed between the sandbox's log and its receipts: the next run's start put them
    # and collected them before its screen, so those sends are recorded as delivered
    assert set(statuses) <= {"sent", "delivered"} and sum(statuses.values()) == len(actions)
    assert rows == len(actions) and set(log) == actions
    assert recorded == log  # each action records the one send the sandbox took for it
    assert receipts == len(actions)  # one delivery receipt each, whatever was sent twice
