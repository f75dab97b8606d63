"""send_time: learned at scale: every customer of a large base learning their hour at once.

``python -m benchmarks.send_time_bench [CUSTOMERS]`` (default 1 million): a warehouse of its
own with CUSTOMERS subscribers and three past surveys each at random local hours, half of them
answered; then the hours of all of them in one call, which is what planning does for a day's
segment (usually far fewer). Prints the seconds each part took.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from datetime import time as clock
from pathlib import Path

from campaigns.send_time import learn_send_hours
from warehouse.db import connect

SENDS_EACH = 3
BEFORE = datetime(2026, 6, 1, tzinfo=UTC)

POPULATION_SQL = """
INSERT INTO stores (store_id, name, city, region, timezone, manager_name, manager_email)
SELECT 'ST' || i, 'store', 'city', 'region', tz, 'm', 'm@example.com'
FROM (SELECT i, CASE WHEN i % 4 = 0 THEN 'America/New_York' ELSE 'Asia/Shanghai' END AS tz
      FROM range(40) t(i));
INSERT INTO subscribers (subscriber_id, name, joined_on, tier, home_store_id, timezone, locale,
    sms_consent, email_consent, voice_consent)
SELECT 'S' || i, 'n', DATE '2020-01-01', 'standard', 'ST' || (i % 40),
    CASE WHEN i % 40 % 4 = 0 THEN 'America/New_York' ELSE 'Asia/Shanghai' END, 'zh-CN',
    true, false, false
FROM range($n) t(i);
INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id, subscriber_id,
    occasion, round, tier, locale, channel, survey, status, scheduled_at, created_at, sent_at,
    updated_at, timezone)
SELECT 'A' || k, 'k' || k, 'bench', 'birthday', 'S' || (k // $each), 'o', 1, 'standard',
    'zh-CN', 'sms', true, 'delivered', sent, sent, sent, sent, 'Asia/Shanghai'
FROM (SELECT k, TIMESTAMPTZ '2026-01-01 01:00:00+00' + to_minutes((k * 7919) % 200000) AS sent
      FROM range($n * $each) t(k));
INSERT INTO latest_ratings (action_id, evaluation_id, subscriber_id, campaign_id, round,
    store_id, channel, score, comment, received_at)
SELECT action_id, 'e' || action_id, subscriber_id, 'birthday', 1, NULL, 'sms', 5, NULL,
    sent_at + INTERVAL 10 MINUTE
FROM care_actions WHERE md5_number_lower(action_id) % 2 = 0;
CREATE TABLE everyone AS SELECT subscriber_id FROM subscribers;
"""


def main(customers: int = 1_000_000) -> list[str]:
    with tempfile.TemporaryDirectory() as home:
        con = connect(Path(home) / "warehouse.duckdb")
        started = time.perf_counter()
        for statement in filter(str.strip, POPULATION_SQL.split(";")):
            params = {"n": customers, "each": SENDS_EACH}
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})
        built = time.perf_counter() - started
        started = time.perf_counter()
        learned = learn_send_hours(
            con, "everyone", before=BEFORE, hours=list(range(9, 21)), fallback=clock(10)
        )
        took = time.perf_counter() - started
        con.close()
    return [
        f"send-time bench: {customers:,} customers, {customers * SENDS_EACH:,} past sends "
        f"(built in {built:.1f} s)",
        f"every customer's hour learned in {took:.1f} s: {learned.as_json()}",
    ]


if __name__ == "__main__":
    print("\n".join(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
