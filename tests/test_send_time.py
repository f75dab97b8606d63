"""send_time: learned: the best hour per customer, judged on simulated populations with a known
truth (a planted preferred part of the day, or none) and on hand-built histories."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from campaigns.catalog import load_campaigns
from campaigns.planning import Plan, run_steps
from campaigns.send_time import learn_send_hours
from campaigns.spec import Campaign, CampaignError, parse_campaign
from careloop.cli import app
from insights.send_time import evaluate_send_time
from tests.factories import add_store, add_subscriber
from warehouse.db import register_frame

CUTOFF = datetime(2026, 5, 1, tzinfo=UTC)
UNTIL = CUTOFF + timedelta(days=30)
HISTORY_DAYS = 180
CENTRES = (9.5, 12.5, 19.5)  # morning, lunch, evening: the planted preferred hours


def simulate(
    con, seed: int, *, planted: bool, customers: int = 6000, sends: int = 6, later: int = 3
) -> None:
    """Customers (a third in New York) with ``sends`` surveys before CUTOFF and ``later``
    after it, each at a random local hour of 09:00-20:59; answered with probability 0.45,
    times up to 1.5 near each one's preferred hour and 0.7 far from it when ``planted``."""
    rng = np.random.default_rng(seed)
    add_store(con)
    add_store(con, store_id="ST2", name="NY", timezone="America/New_York")
    ny = rng.random(customers) < 1 / 3
    ids = np.char.add("S", np.arange(customers).astype(str))
    people = pl.DataFrame(
        {
            "subscriber_id": ids,
            "store_id": np.where(ny, "ST2", "ST1"),
            "timezone": np.where(ny, "America/New_York", "Asia/Shanghai"),
        }
    )
    register_frame(con, "people", people)
    con.execute(
        "INSERT INTO subscribers (subscriber_id, name, joined_on, tier, home_store_id, timezone, "
        "locale, sms_consent, email_consent, voice_consent) SELECT subscriber_id, 'n', "
        "DATE '2020-01-01', 'standard', store_id, timezone, 'zh-CN', true, false, false "
        "FROM people"
    )
    centre = rng.choice(CENTRES, customers, p=[0.3, 0.2, 0.5]) + rng.uniform(-1, 1, customers)
    per = sends + later
    who = np.repeat(np.arange(customers), per)
    after = np.tile(np.arange(per) >= sends, customers)
    day = np.where(after, rng.integers(0, 30, len(who)), -rng.integers(1, HISTORY_DAYS, len(who)))
    hour = rng.integers(9, 21, len(who))
    near = np.exp(-((hour + 0.5 - centre[who]) ** 2) / (2 * 1.5**2))
    p = 0.45 * (0.7 + 0.8 * near) if planted else np.full(len(who), 0.45)
    sends_frame = pl.DataFrame(
        {
            "action_id": np.char.add("A", np.arange(len(who)).astype(str)),
            "subscriber_id": ids[who],
            "timezone": people["timezone"].to_numpy()[who],
            "local_at": (
                np.datetime64(CUTOFF.date(), "m")
                + (day * 24 * 60 + hour * 60 + rng.integers(0, 60, len(who))).astype("m8[m]")
            ).astype("datetime64[ms]"),
            "answered": rng.random(len(who)) < p,
        }
    )
    add_sends(con, sends_frame)


def add_sends(con, frame: pl.DataFrame) -> None:
    """Sent birthday surveys at local times (``local_at`` in ``timezone``); the answered ones
    rated ten minutes later."""
    register_frame(con, "sends", frame)
    con.execute(
        """
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, tier, locale, channel, survey, status,
            scheduled_at, created_at, sent_at, updated_at, timezone)
        SELECT action_id, 'k' || action_id, 'history', 'birthday', subscriber_id, action_id, 1,
            'standard', 'zh-CN', 'sms', true, 'delivered', sent, sent, sent, sent, timezone
        FROM (SELECT *, timezone(timezone, local_at::TIMESTAMP) AS sent FROM sends)"""
    )
    con.execute(
        "INSERT INTO latest_ratings (action_id, evaluation_id, subscriber_id, campaign_id, "
        "round, store_id, channel, score, comment, received_at) "
        "SELECT action_id, 'e' || action_id, subscriber_id, "
        "'birthday', 1, NULL, 'sms', 5, NULL, timezone(timezone, local_at::TIMESTAMP) "
        "+ INTERVAL 10 MINUTE FROM sends WHERE answered"
    )
    con.unregister("sends")


def birthday(settings, **changes) -> Campaign:
    return load_campaigns(settings)["birthday"].campaign.model_copy(update=changes)


LEARNED = {"send_time": "learned", "send_time_fallback": time(10)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learned_hours_beat_the_fixed_one_where_customers_have_a_part_of_the_day(
    con, settings, seed
):
    simulate(con, seed, planted=True, customers=12_000, later=6)
    found = evaluate_send_time(con, birthday(settings, **LEARNED), CUTOFF, UNTIL)
    assert found.difference is not None
    assert found.difference.low > 0.02  # the 95% interval clears 0 by a margin
    assert found.learned.mean > found.fixed.mean + 0.03
    assert found.with_history == 12_000 and found.compared > 5000
    assert 5 < found.model.customer_strength < 100  # customers differ: a moderate prior


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_learned_hours_do_no_harm_when_nobody_prefers_an_hour(con, settings, seed):
    simulate(con, seed, planted=False, customers=12_000, later=6)
    found = evaluate_send_time(con, birthday(settings, **LEARNED), CUTOFF, UNTIL)
    if found.difference is None:  # no learned hour beat the fixed one by MIN_GAIN: none moved
        assert found.learned.n == 0
        return
    # not worse: the 95% interval rules out a loss of 5 points (non-inferiority)
    assert found.difference.low > -0.05
    assert abs(found.difference.estimate) < 0.025
    # no variation beyond noise: the priors are strong, a customer's few sends move little
    assert found.model.customer_strength > 30


def add_history(con, subscriber_id: str, hours: list[int], answered: list[bool], zone: str):
    first = np.datetime64(CUTOFF.date() - timedelta(days=len(hours) + 1), "m")
    add_sends(
        con,
        pl.DataFrame(
            {
                "action_id": [f"{subscriber_id}-{i}" for i in range(len(hours))],
                "subscriber_id": subscriber_id,
                "timezone": zone,
                "local_at": (
                    first + (np.arange(len(hours)) * 24 * 60 + np.array(hours) * 60).astype("m8[m]")
                ).astype("datetime64[ms]"),
                "answered": answered,
            }
        ),
    )


def learn(con, *subscribers: str, hours=tuple(range(9, 21))) -> dict[str, tuple[int, str]]:
    con.execute("CREATE OR REPLACE TEMP TABLE wanted (subscriber_id VARCHAR)")
    con.executemany("INSERT INTO wanted VALUES (?)", [[s] for s in subscribers])
    learn_send_hours(con, "wanted", before=CUTOFF, hours=list(hours), fallback=time(10))
    rows = con.execute("SELECT subscriber_id, hour, source FROM send_hours").fetchall()
    return {s: (h, source) for s, h, source in rows}


def test_a_thin_history_is_pulled_to_the_store_and_a_long_one_keeps_its_hour(con, settings):
    simulate(con, 5, planted=True, customers=3000, later=0)
    add_subscriber(con, "X1")
    add_subscriber(con, "X2")
    add_history(con, "X1", [15, 15], [True, True], "Asia/Shanghai")  # two replies at 15:00
    long = [15, 19, 10, 15, 12, 20, 15, 9, 15, 19] * 4  # answers at 15:00, rarely otherwise
    add_history(con, "X2", long, [h == 15 for h in long], "Asia/Shanghai")
    found = learn(con, "X1", "X2")
    assert found["X2"] == (15, "learned")
    assert found["X1"][1] == "learned" and found["X1"][0] != 15
    assert abs(found["X1"][0] - 19.5) <= 2  # the store's evening, not the odd hour


def test_customers_without_history_get_the_fixed_time(con, settings):
    simulate(con, 6, planted=True, customers=500, later=0)
    add_subscriber(con, "NEW1")
    assert learn(con, "NEW1", "S1")["NEW1"] == (10, "fallback")


def test_a_new_york_customer_gets_their_own_local_hour(con, settings):
    simulate(con, 7, planted=True, customers=500, later=0)
    add_store(con, store_id="ST3", name="NY 2", timezone="America/New_York")
    add_subscriber(con, "N1", timezone="America/New_York", home_store_id="ST3")
    add_subscriber(con, "C1")
    evenings = [19] * 40
    add_history(con, "N1", evenings, [True] * 40, "America/New_York")
    add_history(con, "C1", [9] * 40, [True] * 40, "Asia/Shanghai")
    found = learn(con, "N1", "C1")
    assert found["N1"] == (19, "learned")  # 19:00 in New York, 07:00 or 08:00 in Shanghai
    assert found["C1"] == (9, "learned")


AS_OF = date(2026, 6, 15)  # the factory's default birthday
PLANNED_AT = datetime(2026, 6, 15, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai


def plan_birthdays(con, settings, **changes) -> None:
    """Plan the birthday campaign (changed by ``changes``) as of AS_OF, at PLANNED_AT."""
    loaded = load_campaigns(settings)["birthday"]
    changes = {"holdout_percent": 0.0, **changes}
    loaded = dataclasses.replace(loaded, campaign=loaded.campaign.model_copy(update=changes))
    run_steps(Plan(con, settings, loaded, AS_OF, round=1, run_id="r1", created_at=PLANNED_AT))


def scheduled(con) -> dict[str, tuple[datetime, str | None, str]]:
    """Each planned customer's send time in their own timezone, its source and status."""
    rows = con.execute(
        "SELECT subscriber_id, timezone(s.timezone, scheduled_at), send_time_source, status "
        "FROM care_actions JOIN subscribers s USING (subscriber_id) WHERE run_id = 'r1'"
    ).fetchall()
    return {s: (local, source, status) for s, local, source, status in rows}


def test_planning_sends_each_at_their_hour_and_never_moves_the_held_out(con, settings):
    add_store(con)
    add_store(con, store_id="ST2", name="NY", timezone="America/New_York")
    ny = {"timezone": "America/New_York", "home_store_id": "ST2", "locale": "en"}
    for n in range(1, 41):  # born on June 15 (the factory's default): all in the segment
        add_subscriber(con, f"S{n}", **(ny if n % 2 else {}))
        zone = "America/New_York" if n % 2 else "Asia/Shanghai"
        add_history(con, f"S{n}", [19] * 30 + [10] * 30, [True] * 30 + [False] * 30, zone)
    # a held-out row is never read, even one that (wrongly) says it was sent and answered
    add_subscriber(con, "H1")
    add_history(con, "H1", [15] * 30, [True] * 30, "Asia/Shanghai")
    con.execute("UPDATE care_actions SET status = 'held_out', suppression_reason = 'holdout' "
                "WHERE subscriber_id = 'H1'")  # fmt: skip
    add_subscriber(con, "NEW")
    plan_birthdays(con, settings, send_time_explore_percent=0.0, holdout_percent=30.0, **LEARNED)
    found = scheduled(con)
    held_out = {s for s, (_, _, status) in found.items() if status == "held_out"}
    assert 5 <= len(held_out) <= 25
    for subscriber, (local, source, status) in found.items():
        assert local.date() == AS_OF
        if status == "held_out" or subscriber in ("H1", "NEW"):
            assert (local.hour, source) == (10, None if status == "held_out" else "fallback")
        else:
            assert (local.hour, source) == (19, "learned"), subscriber


def test_a_window_near_midnight_keeps_the_learned_hour_inside_it(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2")
    # answers late at night, not at 21:00; the other answers in the morning only
    add_history(con, "S1", [21, 23] * 10, [False, True] * 10, "Asia/Shanghai")
    add_history(con, "S2", [9, 22] * 10, [True, False] * 10, "Asia/Shanghai")
    plan_birthdays(
        con, settings, send_time="learned", send_time_fallback=time(21, 30),
        send_window=(time(21), time(23, 59)), send_time_explore_percent=0.0,
    )  # fmt: skip
    local = {s: at for s, (at, _, _) in scheduled(con).items()}
    assert local["S1"].hour == 23 and local["S1"].date() == AS_OF
    assert local["S2"].hour in (21, 22, 23) and local["S2"].date() == AS_OF


def test_exploration_sends_a_share_at_random_hours_of_the_window(con, settings):
    add_sms_people(con, 400)
    plan_birthdays(con, settings, send_time_explore_percent=25.0, **LEARNED)
    found = scheduled(con)
    explored = [at.hour for at, source, _ in found.values() if source == "explore"]
    assert 60 <= len(explored) <= 140
    assert set(explored) <= set(range(9, 21)) and len(set(explored)) >= 8
    assert all(s == "fallback" for _, s, _ in found.values() if s != "explore")


def add_sms_people(con, count: int) -> None:
    add_store(con)
    for n in range(count):
        add_subscriber(con, f"S{n}", email=None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"send_time": "25:00"}, "send_time"),
        ({"send_time": "learned"}, "send_time_fallback"),
        ({"send_time": "10:00", "send_time_fallback": "10:00"}, "send_time_fallback"),
        ({"send_time": "learned", "send_time_fallback": "soon"}, "send_time_fallback"),
        ({"send_time_explore_percent": 80}, "send_time_explore_percent"),
        (
            {
                "send_time": "learned",
                "send_time_fallback": "09:30",
                "send_window": ["09:10", "09:50"],
            },
            "send_window",
        ),
    ],
)
def test_a_bad_send_time_names_the_field(tmp_path: Path, changes, field):
    raw = yaml.safe_load(Path("campaigns/definitions/birthday.yaml").read_text())
    raw = {k: v for k, v in raw.items() if not k.startswith("send_time")}
    path = tmp_path / "birthday.yaml"
    path.write_text(yaml.safe_dump({**raw, **changes}))
    with pytest.raises(CampaignError, match=field):
        parse_campaign(path)


def test_a_learned_campaign_file_loads(tmp_path: Path):
    raw = yaml.safe_load(Path("campaigns/definitions/birthday.yaml").read_text())
    path = tmp_path / "birthday.yaml"
    path.write_text(yaml.safe_dump({**raw, "send_time": "learned", "send_time_fallback": "10:30"}))
    campaign = parse_campaign(path)
    assert campaign.learns_send_time and campaign.fixed_send_time == time(10, 30)
    assert campaign.window_hours == list(range(9, 21))


def test_the_command_reports_the_held_out_comparison(con, settings):
    simulate(con, 1, planted=True, customers=3000)
    runner = CliRunner()
    args = ["insights", "send-time", "--campaign", "birthday", "--cutoff", "2026-05-01"]
    result = runner.invoke(app, [*args, "--until", "2026-05-31", "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    zone = ZoneInfo("Asia/Shanghai")  # the business's: the dates are its days
    found = evaluate_send_time(
        con,
        birthday(settings),
        datetime(2026, 5, 1, tzinfo=zone),
        datetime(2026, 5, 31, tzinfo=zone),
    )
    assert shown["learned_hour"]["sends"] == found.learned.n > 0
    assert shown["fixed"]["answered"] == found.fixed.total
    assert found.difference is not None
    assert shown["difference"]["interval"] == [found.difference.low, found.difference.high]
    # a p-value shows its six significant digits, as on every other surface (insights.stats)
    assert shown["difference"]["p_value"] == float(f"{found.difference.p_value:.6g}")
    assert shown["customers"]["with_history"] == 3000
    # named as the table names them: "held_out" means the holdout group everywhere else
    assert shown["customers"]["in_test_period"] == found.customers
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "learned hour" in table.output
    unknown = runner.invoke(app, ["insights", "send-time", "--campaign", "nope"])
    assert unknown.exit_code == 2 and "nope" in unknown.output
