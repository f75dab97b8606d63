"""A deterministic, realistic synthetic population: stores, subscribers and store visits.

Generated in chunks with numpy and polars and appended to DuckDB, so 10 million subscribers never
live in Python objects at once. The same (subscribers, seed, until) always gives the same data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import numpy as np
import polars as pl

from campaigns.planning import OUTBOX_CONFLICT
from demo.customers import (
    TROUBLE_FROM,
    TROUBLED_STORE,
    answer_factor,
    churn_days,
    complaint,
    draw_scores,
    in_us,
    moods,
    trait,
)
from warehouse.db import query_frame, register_frame
from warehouse.ratings import rebuild_ratings

CHUNK = 500_000
CN_SURNAMES = [
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("高", "gao"),
    ("罗", "luo"),
]
CN_GIVEN = [
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("洋", "yang"),
    ("艳", "yan"),
    ("勇", "yong"),
    ("军", "jun"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("秀英", "xiuying"),
    ("桂英", "guiying"),
    ("子涵", "zihan"),
    ("欣怡", "xinyi"),
    ("浩然", "haoran"),
    ("雨萱", "yuxuan"),
    ("建国", "jianguo"),
    ("晓东", "xiaodong"),
]
EN_FIRST = [
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Daniel",
    "Karen",
    "Emily",
    "Olivia",
    "Noah",
    "Liam",
    "Sofia",
    "Mateo",
    "Aisha",
    "Priya",
    "Wei",
    "Mei",
]
EN_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Nguyen",
    "Patel",
    "Kim",
    "OBrien",
    "Chen",
]
EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com"]
CN_MOBILE_PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "182",
    "183",
    "187",
    "188",
    "130",
    "131",
    "132",
    "155",
    "156",
    "185",
    "186",
    "133",
    "153",
    "180",
    "181",
    "189",
    "177",
    "199",
]
US_AREA_CODES = [
    "212",
    "646",
    "718",
    "312",
    "773",
    "303",
    "720",
    "213",
    "310",
    "323",
    "415",
    "628",
    "206",
    "425",
    "808",
    "617",
    "404",
    "512",
    "305",
    "702",
]
# (city, city in Chinese, region, timezone, country)
CITIES = [
    ("Shanghai", "上海", "East China", "Asia/Shanghai", "CN"),
    ("Beijing", "北京", "North China", "Asia/Shanghai", "CN"),
    ("Guangzhou", "广州", "South China", "Asia/Shanghai", "CN"),
    ("Shenzhen", "深圳", "South China", "Asia/Shanghai", "CN"),
    ("Chengdu", "成都", "Southwest China", "Asia/Shanghai", "CN"),
    ("Urumqi", "乌鲁木齐", "Northwest China", "Asia/Urumqi", "CN"),
    ("New York", "纽约", "US East", "America/New_York", "US"),
    ("Chicago", "芝加哥", "US Central", "America/Chicago", "US"),
    ("Denver", "丹佛", "US Mountain", "America/Denver", "US"),
    ("Los Angeles", "洛杉矶", "US West", "America/Los_Angeles", "US"),
    ("Seattle", "西雅图", "US West", "America/Los_Angeles", "US"),
    ("Honolulu", "檀香山", "US Pacific", "Pacific/Honolulu", "US"),
]
STORES_PER_CITY = 4
TIERS = np.array(["standard", "silver", "gold", "platinum"])
SERVICE_TYPES = np.array(["new_line", "upgrade", "repair", "billing", "plan_change", "sim_swap"])
VISITS_PER_YEAR = 2.0


@dataclass(frozen=True)
class DemoDataSummary:
    stores: int
    subscribers: int
    visits: int
    past_ratings: int = 0


def build_demo_data(
    con: duckdb.DuckDBPyConnection,
    *,
    subscribers: int,
    seed: int,
    until: date,
    visits: bool = True,
    history_before: date | None = None,
    on_progress: Callable[[int], None] = lambda done: None,
) -> DemoDataSummary:
    """Replace stores, subscribers and visits with a synthetic population as of ``until``;
    with ``history_before``, also a year of rated store visits before that day (the past the
    at_risk model learns from, see demo.customers).

    Each chunk is its own transaction: one transaction over 10 million rows would hold every
    index change in memory until the end.
    """
    if subscribers < 1:
        raise ValueError("subscribers must be at least 1")
    stores = _replace_stores(con)
    visit_count = 0
    for start in range(0, subscribers, CHUNK):
        rng = np.random.default_rng([seed, start // CHUNK])
        idx = np.arange(start, min(start + CHUNK, subscribers), dtype=np.int64)
        people = make_subscribers(rng, idx, stores, until)
        con.execute("BEGIN TRANSACTION")
        if visits:
            visit_count += append_visits(
                con, rng, people, stores, until, first_visit_no=visit_count
            )
        register_frame(con, "chunk", people)
        con.execute("INSERT INTO subscribers BY NAME SELECT * FROM chunk")
        con.unregister("chunk")
        con.execute("COMMIT")
        on_progress(len(idx))
    past = append_history(con, seed, history_before) if history_before and visits else 0
    # The history's ratings, and none of the past it replaced or its departed customers'.
    rebuild_ratings(con)
    return DemoDataSummary(stores.height, subscribers, visit_count, past)


def _replace_stores(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """A new population starts from nothing: visits, subscribers and stores go first."""
    stores = make_stores()
    for table in ("store_visits", "subscribers", "stores", "regions"):
        con.execute(f"DELETE FROM {table}")
    register_frame(con, "new_stores", stores)
    con.execute("INSERT INTO stores BY NAME SELECT * FROM new_stores")
    con.unregister("new_stores")
    con.executemany("INSERT INTO regions VALUES (?, ?, ?)", make_regions())
    return stores


def make_regions() -> list[tuple[str, str, str]]:
    """Each region's contact, who hears of cases left past their SLA."""
    regions = sorted({city[2] for city in CITIES})
    return [
        (
            region,
            f"{EN_FIRST[n % len(EN_FIRST)]} {EN_LAST[n % len(EN_LAST)]}",
            f"region.{region.lower().replace(' ', '-')}@example.com",
        )
        for n, region in enumerate(regions)
    ]


def make_stores() -> pl.DataFrame:
    rows = []
    for city_no, (city, city_zh, region, tz, country) in enumerate(CITIES):
        for branch in range(1, STORES_PER_CITY + 1):
            store_id = f"ST{city_no:02d}{branch:02d}"
            surname, given = (
                CN_SURNAMES[(city_no * 7 + branch) % len(CN_SURNAMES)][0],
                CN_GIVEN[(city_no * 5 + branch) % len(CN_GIVEN)][0],
            )
            manager = (
                surname + given
                if country == "CN"
                else f"{EN_FIRST[(city_no + branch) % len(EN_FIRST)]} "
                f"{EN_LAST[(city_no * 2 + branch) % len(EN_LAST)]}"
            )
            label = f"{city_zh}{branch}号店" if country == "CN" else f"{city} #{branch}"
            rows.append(
                {
                    "store_id": store_id,
                    "name": label,
                    "city": city,
                    "region": region,
                    "timezone": tz,
                    "manager_name": manager,
                    "manager_email": f"manager.{store_id.lower()}@example.com",
                }
            )
    return pl.DataFrame(rows)


def make_subscribers(
    rng: np.random.Generator, idx: np.ndarray, stores: pl.DataFrame, until: date
) -> pl.DataFrame:
    n = len(idx)
    in_china = rng.random(n) < 0.75
    home = _home_stores(rng, in_china, stores)
    zh = np.where(in_china, rng.random(n) < 0.92, rng.random(n) < 0.15)
    names, romanized = _names(rng, zh)
    until_day = np.datetime64(until, "D")
    birthday = until_day - rng.integers(int(18 * 365.25), int(85 * 365.25), n)
    joined = until_day - rng.integers(0, int(20 * 365.25), n)
    joined = np.maximum(joined, birthday + int(16 * 365.25))
    tenure_years = (until_day - joined).astype(int) / 365.25
    has_email = rng.random(n) < 0.8
    email = _emails(rng, romanized)
    frame = pl.DataFrame(
        {
            "subscriber_id": np.char.add("S", np.char.zfill(idx.astype(str), 9)),
            "name": names,
            "phone": _phones(idx, in_china),
            "email": email,
            "birthday": birthday,
            "joined_on": joined,
            "tier": _tiers(rng, tenure_years),
            "home_store_id": stores["store_id"].to_numpy()[home],
            "timezone": stores["timezone"].to_numpy()[home],
            "locale": np.where(zh, "zh-CN", "en"),
            "sms_consent": rng.random(n) < 0.88,
            "email_consent": has_email & (rng.random(n) < 0.75),
            "voice_consent": rng.random(n) < 0.45,
        }
    )
    return frame.with_columns(
        _null_unless(rng.random(n) < 0.98, "phone"),
        _null_unless(has_email, "email"),
        _null_unless(rng.random(n) < 0.95, "birthday").cast(pl.Date),
        pl.col("joined_on").cast(pl.Date),
    )


def _emails(rng: np.random.Generator, romanized: np.ndarray) -> np.ndarray:
    n = len(romanized)
    numbered = np.char.add(romanized, rng.integers(1, 999, n).astype(str))
    emails: np.ndarray = np.char.add(numbered, np.char.add("@", rng.choice(EMAIL_DOMAINS, n)))
    return emails


def _home_stores(
    rng: np.random.Generator, in_china: np.ndarray, stores: pl.DataFrame
) -> np.ndarray:
    """Each subscriber's home store (its row number), in their own country."""
    country = np.array([CITIES[int(s[2:4])][4] for s in stores["store_id"]])
    n = len(in_china)
    cn, us = np.flatnonzero(country == "CN"), np.flatnonzero(country == "US")
    home: np.ndarray = np.where(in_china, rng.choice(cn, n), rng.choice(us, n))
    return home


def _tiers(rng: np.random.Generator, tenure_years: np.ndarray) -> np.ndarray:
    """Longer tenure, higher tier: about 55% standard, 25% silver, 12% gold, 3-8% platinum."""
    draw = rng.random(len(tenure_years)) * 0.85 + np.minimum(tenure_years, 20) / 20 * 0.15
    tiers: np.ndarray = TIERS[np.searchsorted([0.55, 0.8, 0.92], draw)]
    return tiers


def _null_unless(keep: np.ndarray, column: str) -> pl.Expr:
    return pl.when(pl.Series(keep)).then(pl.col(column)).otherwise(None).alias(column)


def _names(rng: np.random.Generator, zh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(zh)
    sur = rng.integers(0, len(CN_SURNAMES), n)
    giv = rng.integers(0, len(CN_GIVEN), n)
    first = rng.integers(0, len(EN_FIRST), n)
    last = rng.integers(0, len(EN_LAST), n)
    cn_name = np.char.add(
        np.array([s[0] for s in CN_SURNAMES])[sur], np.array([g[0] for g in CN_GIVEN])[giv]
    )
    cn_roman = np.char.add(
        np.char.add(np.array([g[1] for g in CN_GIVEN])[giv], "."),
        np.array([s[1] for s in CN_SURNAMES])[sur],
    )
    en_name = np.char.add(np.char.add(np.array(EN_FIRST)[first], " "), np.array(EN_LAST)[last])
    en_roman = np.char.lower(
        np.char.add(np.char.add(np.array(EN_FIRST)[first], "."), np.array(EN_LAST)[last])
    )
    return np.where(zh, cn_name, en_name), np.where(zh, cn_roman, en_roman)


def _phones(idx: np.ndarray, in_china: np.ndarray) -> np.ndarray:
    """Unique by construction: a bijection of the subscriber number onto each number plan."""
    cn_prefix = np.array(CN_MOBILE_PREFIXES)[idx % len(CN_MOBILE_PREFIXES)]
    cn_rest = (idx // len(CN_MOBILE_PREFIXES) * 48_271 + 24_681_357) % 100_000_000
    cn = np.char.add(np.char.add("+86", cn_prefix), np.char.zfill(cn_rest.astype(str), 8))
    us_area = np.array(US_AREA_CODES)[idx % len(US_AREA_CODES)]
    us_rest = (idx // len(US_AREA_CODES) * 7_654_321 + 1_234_567) % 7_000_000
    exchange = 300 + us_rest // 10_000  # 300-999: avoids N11 service codes below 300 only
    us = np.char.add(
        np.char.add("+1", us_area),
        np.char.add(exchange.astype(str), np.char.zfill((us_rest % 10_000).astype(str), 4)),
    )
    return np.where(in_china, cn, us)


def append_visits(
    con: duckdb.DuckDBPyConnection,
    rng: np.random.Generator,
    people: pl.DataFrame,
    stores: pl.DataFrame,
    until: date,
    *,
    first_visit_no: int,
) -> int:
    number = people["subscriber_id"].str.slice(1).cast(pl.Int64).to_numpy()
    # grumpy customers come back more (repairs, billing disputes)
    counts = rng.poisson(VISITS_PER_YEAR * (1 + 0.8 * np.maximum(trait(number), 0)))
    who = np.repeat(np.arange(people.height), counts)
    total = len(who)
    if total == 0:
        return 0
    store_ids = stores["store_id"].to_numpy()
    home = people["home_store_id"].to_numpy()[who]
    elsewhere = store_ids[rng.integers(0, len(store_ids), total)]
    visit_store = np.where(rng.random(total) < 0.85, home, elsewhere)
    day = np.datetime64(until, "D") - rng.integers(0, 365, total)
    minute = rng.integers(9 * 60, 21 * 60, total)
    local = (day.astype("datetime64[m]") + minute.astype("timedelta64[m]")).astype("datetime64[ms]")
    frame = pl.DataFrame(
        {
            "visit_id": np.char.add(
                "V",
                np.char.zfill(np.arange(first_visit_no, first_visit_no + total).astype(str), 10),
            ),
            "subscriber_id": people["subscriber_id"].to_numpy()[who],
            "store_id": visit_store,
            "local_time": local,
            "service_type": SERVICE_TYPES[rng.integers(0, len(SERVICE_TYPES), total)],
        }
    )
    _insert_visits(con, frame)
    return total


def _insert_visits(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """Visits at local store times, stored as the moments they were."""
    register_frame(con, "visit_chunk", frame)
    con.execute(
        "INSERT INTO store_visits SELECT v.visit_id, v.subscriber_id, v.store_id,"
        " timezone(s.timezone, v.local_time), v.service_type"
        " FROM visit_chunk v JOIN stores s USING (store_id)"
    )
    con.unregister("visit_chunk")


HISTORY_DAYS = 365
SURVEYED, ANSWERED = 0.8, 0.6  # of past visits asked about; of those, answered
HISTORY_RUN = "history"
HISTORY_HOLDOUT_PERCENT = 5  # as campaigns/definitions/store_visit.yaml holds out

PAST_VISITS_SQL = """
SELECT v.visit_id, v.subscriber_id, s.tier, s.locale, v.store_id,
       timezone('Asia/Shanghai', v.visited_at)::DATE AS visited_on,
       date_diff('day', s.joined_on, v.visited_at::DATE) / 365.25 AS tenure_years,
       s.timezone, hour(timezone(s.timezone, v.visited_at + INTERVAL 30 MINUTE)) AS asked_hour
FROM store_visits v JOIN subscribers s USING (subscriber_id)
WHERE v.visited_at < $before AND v.visited_at >= $before - to_days($days)
  AND s.phone IS NOT NULL
ORDER BY v.visit_id
"""
PAST_ACTIONS_SQL = (
    """
INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id, subscriber_id,
    occasion, round, store_id, tier, locale, channel, recipient, body, survey, status,
    scheduled_at, created_at, sent_at, updated_at, sender, provider_id, timezone, expires_at,
    suppression_reason)
SELECT 'ca_' || h.visit_id, 'store_visit|' || v.subscriber_id || '|' || occasion || '|1',
    $run, 'store_visit', v.subscriber_id, occasion, 1, v.store_id, s.tier, s.locale, 'sms',
    s.phone, '(sent before the demo)', true,
    CASE WHEN held_out THEN 'held_out' ELSE 'delivered' END,
    asked_at, asked_at, CASE WHEN NOT held_out THEN asked_at END, asked_at, '+10000000000',
    CASE WHEN NOT held_out THEN 'SM' || md5(h.visit_id) END, s.timezone,
    asked_at + INTERVAL 48 HOUR, CASE WHEN held_out THEN 'holdout' END
FROM (
    SELECT *, visited_at + INTERVAL 30 MINUTE AS asked_at,
           'visit-' || store_id || '-' || strftime(visit_local_date, '%Y-%m-%d') AS occasion,
           -- the live campaign's holdout rule (campaigns/planning.py), so the same customers
           md5_number(subscriber_id || '|store_visit') % 10000 < $holdout AS held_out
    FROM visits
) v
JOIN past_surveys h USING (visit_id)
JOIN subscribers s USING (subscriber_id)
"""
    + OUTBOX_CONFLICT
)
PAST_RATINGS_SQL = """
INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, campaign_id,
    round, store_id, channel, sender, intent, score, comment, attribution, received_at)
SELECT 'ev_' || h.visit_id, 'history:' || h.visit_id, a.action_id, a.subscriber_id,
    'store_visit', 1, a.store_id, 'sms', a.recipient, 'rating', h.score, h.comment, 'matched',
    a.sent_at + to_minutes(h.reply_minutes)
FROM past_surveys h JOIN care_actions a ON a.action_id = 'ca_' || h.visit_id
WHERE h.answered AND a.status = 'delivered'
"""


def append_history(con: duckdb.DuckDBPyConnection, seed: int, before: date) -> int:
    """A year of store-visit surveys before ``before``: six in ten visits asked about, half
    of those answered, each rating drawn from the customer's mood. Returns the ratings."""
    _forget_history(con)
    past = query_frame(con, PAST_VISITS_SQL, {"before": before, "days": HISTORY_DAYS})
    if past.is_empty():
        return 0
    register_frame(con, "past_surveys", _past_surveys(past, np.random.default_rng([seed, 365])))
    con.execute("BEGIN TRANSACTION")
    holdout = HISTORY_HOLDOUT_PERCENT * 100
    con.execute(PAST_ACTIONS_SQL, {"run": HISTORY_RUN, "holdout": holdout})
    rated = len(con.execute(PAST_RATINGS_SQL + " RETURNING 1").fetchall())
    at = datetime.combine(before, time(), tzinfo=UTC)
    con.execute(
        "INSERT INTO campaign_runs VALUES (?, 'store_visit', ?, 1, NULL, ?, ?, ?)",
        [HISTORY_RUN, before - timedelta(days=HISTORY_DAYS), at, at, json.dumps({"rated": rated})],
    )
    con.execute("COMMIT")
    con.unregister("past_surveys")
    return rated - plant_departures(con, np.random.default_rng([seed, 90]))


FIRST_CARE_SQL = f"""
SELECT a.subscriber_id, s.tier,
    min(timezone('Asia/Shanghai', a.created_at))::DATE AS cared_on,
    bool_or(a.status = 'held_out') AS held_out,
    date_diff('day', s.joined_on, min(a.created_at)::DATE) / 365.25 AS tenure_years
FROM care_actions a JOIN subscribers s USING (subscriber_id)
WHERE a.run_id = '{HISTORY_RUN}'
GROUP BY a.subscriber_id, s.tier, s.joined_on
ORDER BY a.subscriber_id
"""
# What a departed customer no longer does: visit, get asked, answer.
AFTER_LEAVING_SQL = f"""
UPDATE subscribers SET left_on = d.left_on FROM departures d
WHERE subscribers.subscriber_id = d.subscriber_id;
DELETE FROM store_visits v USING departures d
WHERE v.subscriber_id = d.subscriber_id AND v.visited_at::DATE > d.left_on;
DELETE FROM evaluations e USING departures d
WHERE e.subscriber_id = d.subscriber_id AND e.dedupe_key LIKE 'history:%'
  AND e.received_at::DATE > d.left_on;
DELETE FROM care_actions a USING departures d
WHERE a.subscriber_id = d.subscriber_id AND a.run_id = '{HISTORY_RUN}'
  AND a.created_at::DATE > d.left_on;
"""


def plant_departures(con: duckdb.DuckDBPyConnection, rng: np.random.Generator) -> int:
    """Some customers leave within 90 days of their first care in the past, fewer of those
    cared for than of those held out (the lift the report should find); what they would have
    done after leaving goes. Returns the ratings removed with them."""
    firsts = query_frame(con, FIRST_CARE_SQL)
    if firsts.is_empty():
        return 0
    number = firsts["subscriber_id"].str.slice(1).cast(pl.Int64).to_numpy()
    mood = moods(
        trait(number),
        firsts["tier"].to_numpy(),
        firsts["tenure_years"].to_numpy(),
        np.zeros(firsts.height, dtype=bool),
    )
    days = churn_days(rng, mood, ~firsts["held_out"].to_numpy())
    departures = (
        firsts.select("subscriber_id", "cared_on")
        .with_columns(pl.Series("days", days))
        .filter(pl.col("days") > 0)
    )
    departures = departures.with_columns(
        (pl.col("cared_on") + pl.duration(days=pl.col("days"))).alias("left_on")
    )
    before = con.execute("SELECT count(*) FROM evaluations").fetchone()
    register_frame(con, "departures", departures)
    con.execute(AFTER_LEAVING_SQL)
    con.unregister("departures")
    after = con.execute("SELECT count(*) FROM evaluations").fetchone()
    return int(before[0] - after[0]) if before and after else 0


def _forget_history(con: duckdb.DuckDBPyConnection) -> None:
    """A rebuilt population gets a new past: the old one's rows go first."""
    con.execute("DELETE FROM evaluations WHERE dedupe_key LIKE 'history:%'")
    con.execute("DELETE FROM care_actions WHERE run_id = ?", [HISTORY_RUN])
    con.execute("DELETE FROM campaign_runs WHERE run_id = ?", [HISTORY_RUN])
    # send_time: learned's stored days were the old past's (campaigns/send_time.py), and so
    # were the retention lift's first care (insights/first_care.py)
    con.execute(
        "DELETE FROM send_hour_days; DELETE FROM send_hour_days_stored; DELETE FROM send_hour_sends"
    )
    con.execute("DELETE FROM care_firsts; DELETE FROM care_firsts_stored")


def _past_surveys(past: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = past.height
    number = past["subscriber_id"].str.slice(1).cast(pl.Int64).to_numpy()
    visited = past["visited_on"].cast(pl.Date)
    visited_on = visited.to_list()
    troubled = (past["store_id"] == TROUBLED_STORE).to_numpy() & (
        visited >= TROUBLE_FROM
    ).to_numpy()
    mood = moods(
        trait(number),
        past["tier"].to_numpy(),
        past["tenure_years"].to_numpy(),
        np.zeros(n, dtype=bool),
        troubled,
    )
    scores = draw_scores(rng, mood)
    draws, picks = rng.random(n), rng.integers(0, 1000, n)
    comment = np.array(
        [
            complaint(locale, on, draw, pick)
            for locale, on, draw, pick in zip(
                past["locale"].to_list(), visited_on, draws, picks, strict=True
            )
        ]
    )
    surveyed = rng.random(n) < SURVEYED
    # asked 30 minutes after the visit: the local hour they were asked at matters to them
    hour_factor = answer_factor(
        number, in_us(past["timezone"].to_numpy()), past["asked_hour"].to_numpy()
    )
    return pl.DataFrame(
        {
            "visit_id": past["visit_id"],
            "answered": surveyed & (rng.random(n) < np.minimum(0.97, ANSWERED * hour_factor)),
            "score": scores,
            "comment": pl.Series(comment).zip_with(
                pl.Series((scores <= 2) & (rng.random(n) < 0.6)),
                pl.Series([None] * n, dtype=pl.String),
            ),
            "reply_minutes": rng.integers(2, 240, n),
        }
    ).filter(pl.Series(surveyed))
