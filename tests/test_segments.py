from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from segments.registry import SegmentError, load_rule, load_rules, materialize
from tests.factories import add_store, add_subscriber, add_visit, members

RULES = load_rules()


def run(con, name, as_of, **params):
    materialize(con, RULES[name], as_of, "plan_target", params)
    return members(con)


@pytest.fixture
def people(con):
    add_store(con)
    add_subscriber(con, "S1", birthday=date(2000, 2, 29), joined_on=date(2020, 2, 29))
    add_subscriber(con, "S2", birthday=date(1985, 2, 28), joined_on=date(2024, 12, 31))
    add_subscriber(con, "S3", birthday=date(1979, 12, 31), joined_on=date(2016, 1, 1))
    add_subscriber(con, "S4", birthday=date(1992, 1, 1), joined_on=date(2021, 1, 1))
    add_subscriber(con, "S5", birthday=None, joined_on=date(2023, 3, 1))
    return con


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2025, 2, 28), ["S1", "S2"]),  # non-leap year: Feb 29 births celebrate on Feb 28
        (date(2025, 3, 1), []),
        (date(2024, 2, 28), ["S2"]),  # leap year: Feb 29 births wait for Feb 29
        (date(2024, 2, 29), ["S1"]),
        (date(2025, 12, 31), ["S3"]),
        (date(2026, 1, 1), ["S4"]),
    ],
)
def test_birthday(people, as_of, expected):
    assert run(people, "birthday", as_of) == expected


def test_birthday_reports_age_and_yearly_occasion(people):
    run(people, "birthday", date(2025, 2, 28))
    rows = people.execute(
        "SELECT subscriber_id, age, occasion FROM plan_target ORDER BY 1"
    ).fetchall()
    assert rows == [("S1", 25, "birthday-2025"), ("S2", 40, "birthday-2025")]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        (date(2021, 2, 28), ["S1"]),  # joined Feb 29 2020: 1 year, on Feb 28 of a non-leap year
        (date(2023, 2, 28), ["S1"]),  # 3 years
        (date(2022, 2, 28), []),  # 2 years is not a milestone
        (date(2024, 2, 29), []),  # 4 years: not a milestone
        (date(2025, 2, 28), ["S1"]),  # 5 years
        (date(2025, 12, 31), ["S2"]),  # 1 year, Dec 31
        (date(2026, 1, 1), ["S3", "S4"]),  # Jan 1: S3 has 10 years, S4 has 5
    ],
)
def test_tenure_milestones(people, as_of, expected):
    assert run(people, "tenure", as_of) == expected


def test_tenure_every_five_years_and_parameter(people):
    add_subscriber(people, "S6", joined_on=date(2006, 5, 5))
    assert run(people, "tenure", date(2026, 5, 5)) == ["S6"]  # 20 years
    assert run(people, "tenure", date(2024, 5, 5)) == []  # 18 years
    assert run(people, "tenure", date(2024, 5, 5), milestones=[18]) == ["S6"]
    assert run(people, "tenure", date(2026, 5, 5), milestone_every=0) == []


def test_store_visit_window_and_one_request_per_store_per_day(people):
    day = date(2026, 3, 1)
    add_store(people, store_id="ST2", name="北京1号店")
    add_visit(people, "V1", "S1", datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    add_visit(people, "V2", "S1", datetime(2026, 3, 1, 6, 0, tzinfo=UTC))  # same store, same day
    add_visit(people, "V3", "S1", datetime(2026, 3, 1, 7, 0, tzinfo=UTC), store_id="ST2")
    add_visit(people, "V4", "S2", datetime(2026, 2, 28, 23, 59, tzinfo=UTC))  # outside 24 h
    add_visit(people, "V5", "S3", datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # after the day
    assert run(people, "store_visit", day, lookback_hours=24) == ["S1", "S1"]
    rows = people.execute(
        "SELECT store_id, visit_id, due_at FROM plan_target ORDER BY 1"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("ST1", "V2"), ("ST2", "V3")]
    assert rows[0][2] == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # last visit + 120 minutes
    assert run(people, "store_visit", day) == ["S1", "S1", "S2"]  # the default, 48 hours


def test_a_run_on_a_business_date_takes_in_its_small_hours(people):
    """At 03:15 on 6 December in Shanghai (19:15 UTC on the 5th) a run with the default as-of
    (the business date, the 6th) found no visit of the last hours: with 24 hours before the
    UTC midnight that ends the 6th, its window began at 08:00 in Shanghai, in the future."""
    add_visit(people, "V1", "S1", datetime(2026, 12, 5, 17, 45, tzinfo=UTC))  # 01:45 on the 6th
    assert run(people, "store_visit", date(2026, 12, 6)) == ["S1"]


def test_store_visit_skips_visits_already_asked_about(people):
    add_visit(people, "V1", "S1", datetime(2026, 3, 1, 2, 0, tzinfo=UTC))
    people.execute("""INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
        subscriber_id, occasion, round, tier, locale, survey, status, created_at, updated_at)
        VALUES ('a1', 'k1', 'r', 'store_visit', 'S1', 'visit-ST1-2026-03-01', 1, 'standard',
        'zh-CN', true, 'sent', now(), now())""")
    assert run(people, "store_visit", date(2026, 3, 1)) == []


def write_rule(tmp_path: Path, sql: str, meta: str = "description: test rule\n") -> Path:
    path = tmp_path / "custom.sql"
    path.write_text(sql)
    path.with_suffix(".yml").write_text(meta)
    return path


def test_broken_rules_name_their_file_and_reason(con, tmp_path):
    bad_sql = load_rule(write_rule(tmp_path, "SELEC subscriber_id FROM subscribers"))
    with pytest.raises(SegmentError, match=r"custom\.sql: SQL does not compile"):
        materialize(con, bad_sql, date(2026, 1, 1), "t")
    no_id = load_rule(write_rule(tmp_path, "SELECT tier FROM subscribers"))
    with pytest.raises(SegmentError, match="must return subscriber_id"):
        materialize(con, no_id, date(2026, 1, 1), "t")
    with pytest.raises(SegmentError, match=r"undeclared parameter\(s\) \$limit"):
        load_rule(write_rule(tmp_path, "SELECT subscriber_id FROM subscribers LIMIT $limit"))
    with pytest.raises(SegmentError, match=r"missing custom\.yml"):
        path = tmp_path / "custom.sql"
        path.with_suffix(".yml").unlink()
        load_rule(path)


def test_duplicate_members_and_unknown_parameters_are_refused(con, tmp_path):
    add_store(con)
    add_subscriber(con, "S1")
    dup = load_rule(
        write_rule(
            tmp_path,
            "SELECT subscriber_id FROM subscribers UNION ALL SELECT subscriber_id FROM subscribers",
        )
    )
    with pytest.raises(SegmentError, match="member S1 appears 2 times"):
        materialize(con, dup, date(2026, 1, 1), "t")
    with pytest.raises(SegmentError, match="unknown parameter"):
        materialize(con, RULES["tenure"], date(2026, 1, 1), "t", {"milestone": [1]})


def test_members_without_an_occasion_are_refused_by_name(con, tmp_path):
    add_store(con)
    for subscriber in ("S1", "S2", "S3"):
        add_subscriber(con, subscriber)
    sql = (
        "SELECT subscriber_id, CASE WHEN subscriber_id = 'S1' THEN 'day-1' END AS occasion "
        "FROM subscribers"
    )
    refused = r"member S2 has a NULL occasion \(2 member\(s\) in all\)"
    with pytest.raises(SegmentError, match=refused):
        materialize(con, load_rule(write_rule(tmp_path, sql)), date(2026, 1, 1), "t")
    kept = sql.replace("END AS occasion", "ELSE 'day-2' END AS occasion")
    assert materialize(con, load_rule(write_rule(tmp_path, kept)), date(2026, 1, 1), "t") == 3


def test_a_rule_added_as_two_files_is_a_segment(con, tmp_path):
    write_rule(
        tmp_path,
        "SELECT subscriber_id, tier FROM subscriber_profile WHERE tier = $tier",
        "description: one tier\nparams:\n  tier: {type: string, default: gold}\n",
    )
    rules = load_rules(tmp_path)
    add_store(con)
    add_subscriber(con, "S1", tier="gold")
    add_subscriber(con, "S2")
    assert list(rules) == ["custom"]
    materialize(con, rules["custom"], date(2026, 1, 1), "t")
    assert members(con, "t") == ["S1"]
