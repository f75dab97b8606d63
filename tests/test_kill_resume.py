"""A dispatcher killed (SIGKILL) at random moments, many times over, then resumed: every care
action reaches the (fake) Twilio server exactly once."""

import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from campaigns.planning import CONTACT_STATUSES
from tests.factories import add_store, add_subscriber
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, TwilioApi, serve
from tests.test_planning import plan
from warehouse.db import connect

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
ACTIONS = 600
KILL_ROUNDS = 12
CHILD = """
import sys
from datetime import datetime
from campaigns.channels.factory import get_provider
from campaigns.dispatch import dispatch
from careloop.settings import load_settings
from warehouse.db import connect
settings = load_settings()
con = connect(settings.warehouse_path)
dispatch(con, get_provider(settings), now=datetime.fromisoformat(sys.argv[1]), batch_size=25)
con.close()
"""


def run_child(env, now, kill_after=None):
    child = subprocess.Popen([sys.executable, "-c", CHILD, now.isoformat()], env=env)
    if kill_after is not None:
        time.sleep(kill_after)
        if child.poll() is None:
            child.kill()
            child.wait()
            return True
    assert child.wait(timeout=120) == 0
    return False


def test_killed_dispatch_sends_each_action_exactly_once(con, settings, monkeypatch):
    add_store(con)
    for n in range(ACTIONS):
        add_subscriber(con, f"S{n}", email=None, voice_consent=False)
    plan(con, settings)
    con.close()
    with serve(TwilioApi()) as (url, twilio):
        # Sending all of it takes about 15 s, so every kill lands while work remains.
        twilio.state.latency = 0.05
        env = {
            **os.environ,
            "CARELOOP_HOME": str(settings.home),
            "CARELOOP_PROVIDER": "live",
            "CARELOOP_TWILIO_BASE_URL": url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": "+15550001111",
            "SENDGRID_API_KEY": "unused",
            "CARELOOP_SECRET_BLOCKS": "false",
            "CARELOOP_SMS_RATE": "1000",
            "CARELOOP_PROVIDER_CONCURRENCY": "2",
        }
        rng = random.Random(20261122)
        kills = sum(
            run_child(env, NOW, kill_after=rng.uniform(1.2, 2.6)) for _ in range(KILL_ROUNDS)
        )
        sent_before_resume = len(twilio.state.messages)
        run_child(env, NOW + timedelta(minutes=3))  # after the grace: settle what is in flight
        per_number = Counter(m["to"] for m in twilio.state.messages)
    assert kills >= 5, "the test must actually kill dispatchers mid-run"
    assert 0 < sent_before_resume <= ACTIONS
    assert len(per_number) == ACTIONS and set(per_number.values()) == {1}
    con = connect(settings.warehouse_path)
    statuses = dict(
        con.execute("SELECT status, count(*) FROM care_actions GROUP BY ALL").fetchall()
    )
    con.close()
    assert statuses == {"sent": ACTIONS} and "sent" in CONTACT_STATUSES
