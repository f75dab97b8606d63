"""The business day, stale contacts and bounded segment parameters (issue 8: time)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns.catalog import checked_campaign, load_campaigns
from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from core.clock import business_date, last_month
from core.settings import ConfigError, load_settings
from flows.care_loop import care_loop
from inbox.inbox import Inbox
from segments.registry import SegmentError, load_rules
from tests.factories import add_store, add_subscriber, add_visit
from tests.test_planning import plan
from warehouse.db import connect

SHANGHAI = load_settings().zone


def test_the_business_day_is_shanghais_not_the_servers():
    late_utc = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 07:30 on March 2 in Shanghai
    assert business_date(SHANGHAI, late_utc) == date(2026, 3, 2)
    assert business_date(SHANGHAI, datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert last_month(SHANGHAI, datetime(2026, 12, 31, 16, 30, tzinfo=UTC)) == "2026-12"
    assert last_month(SHANGHAI, datetime(2026, 1, 1, 0, 0, tzinfo=UTC)) == "2025-12"
    with pytest.raises(ValueError, match="no timezone"):
        business_date(SHANGHAI, datetime(2026, 3, 1))


def test_an_unknown_business_timezone_is_named(monkeypatch):
    monkeypatch.setenv("CARELOOP_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="CARELOOP_TIMEZONE"):
        load_settings()


def test_a_run_at_2330_utc_plans_for_the_next_shanghai_day(con, settings, prefect_harness):
    add_store(con)
    add_subscriber(con, "S1", birthday=date(1990, 3, 2))
    add_subscriber(con, "S2", birthday=date(1990, 3, 1))
    con.close()
    care_loop("birthday", send=False, now=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    con = connect(settings.warehouse_path)
    runs = con.execute("SELECT as_of FROM campaign_runs").fetchall()
    members = con.execute("SELECT subscriber_id FROM care_actions").fetchall()
    con.close()
    assert runs == [(date(2026, 3, 2),)] and members == [("S1",)]


def test_a_birthday_greeting_expires_at_the_end_of_the_customers_day(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None)  # Shanghai
    add_subscriber(con, "S2", email=None, timezone="America/New_York", phone="+12125550102")
    plan(con, settings)  # June 15
    expiry = dict(con.execute("SELECT subscriber_id, expires_at FROM care_actions").fetchall())
    assert expiry["S1"] == datetime(2026, 6, 15, 16, 0, tzinfo=UTC)  # midnight in Shanghai
    assert expiry["S2"] == datetime(2026, 6, 16, 4, 0, tzinfo=UTC)  # midnight in New York
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    figures = dispatch(con, sandbox, now=datetime(2026, 6, 16, 0, 0, tzinfo=UTC))  # 20:00 NY
    rows = dict(
        con.execute("SELECT subscriber_id, status || ':' || error FROM care_actions").fetchall()
    )
    assert rows["S1"] == "expired:expired at 2026-06-15 16:00 UTC before it could be sent"
    assert figures.expired == 1 and figures.sent == {"sms": 1}  # New York: still its day


def test_a_visit_survey_is_valid_48_hours_after_the_visit(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None)
    visited = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    add_visit(con, "V1", "S1", visited)
    plan(con, settings, "store_visit", as_of=date(2026, 3, 1))
    (expires,) = con.execute("SELECT expires_at FROM care_actions").fetchone()
    assert expires == visited + timedelta(hours=48)


def test_a_second_round_is_valid_72_hours_after_the_rating():
    settings = load_settings()
    for loaded in load_campaigns(settings).values():
        assert loaded.campaign.second_round.valid_for in (None, "72h")


def test_a_past_date_is_planned_for_the_archive_and_nothing_is_sent(con, settings, prefect_harness):
    add_store(con)
    add_subscriber(con, "S1", birthday=date(1990, 2, 28))
    con.close()
    november = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    figures = care_loop("birthday", as_of=date(2026, 2, 28), now=november)
    assert "in the past" in figures["notice"] and "will not be sent" in figures["notice"]
    assert figures["dispatch"]["expired"] == 1 and figures["dispatch"]["sent"] == {}
    con = connect(settings.warehouse_path)
    assert con.execute("SELECT status FROM care_actions").fetchall() == [("expired",)]
    con.close()
    assert SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path)).find_sent([]) == {}


def test_a_later_dispatch_never_sends_an_old_campaigns_contacts(con, settings):
    add_store(con)
    add_subscriber(con, "S1", email=None)
    plan(con, settings)  # June 15, never dispatched
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    figures = dispatch(con, sandbox, now=datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    assert figures.sent == {} and figures.expired == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e9, "lookback_hours=1000000000.0 is not within bounds: integer >= 1 and <= 168"),
        (-5, "lookback_hours=-5 is not within bounds: integer >= 1 and <= 168"),
        (None, "lookback_hours=an empty value is not an integer: integer >= 1 and <= 168"),
        ("1e9", "lookback_hours='1e9' is not an integer"),
        (2.5, "lookback_hours=2.5 is not a whole number"),
    ],
)
def test_segment_parameters_are_typed_and_bounded(value, message):
    rule = load_rules()["store_visit"]
    with pytest.raises(SegmentError) as refused:
        rule.bind(date(2026, 3, 1), {"lookback_hours": value})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"{rule.path.with_suffix('.yml')}: ")  # the bounds' file


def test_list_and_number_parameters_are_checked_item_by_item():
    rules = load_rules()
    assert rules["tenure"].bind(date(2026, 5, 5), {"milestones": [2, 4]})["milestones"] == [2, 4]
    with pytest.raises(SegmentError, match=r"milestones=\[\] is not a non-empty list"):
        rules["tenure"].bind(date(2026, 5, 5), {"milestones": []})
    with pytest.raises(SegmentError, match="milestones=0 is not within bounds"):
        rules["tenure"].bind(date(2026, 5, 5), {"milestones": [0]})
    with pytest.raises(SegmentError, match=r"threshold=1\.5 is not within bounds"):
        rules["at_risk"].bind(date(2026, 5, 5), {"threshold": 1.5})


def test_a_bad_parameter_is_refused_before_anything_runs(settings):
    with pytest.raises(SegmentError, match="lookback_hours"):
        checked_campaign(settings, "store_visit", {"lookback_hours": 10**9})
    assert not settings.warehouse_path.exists()


def test_a_rule_must_declare_its_parameters_types(tmp_path):
    (tmp_path / "r.sql").write_text("SELECT subscriber_id FROM subscribers LIMIT $n")
    (tmp_path / "r.yml").write_text("description: d\nparams:\n  n: {default: 3}\n")
    with pytest.raises(SegmentError, match="parameter n needs a type and a default"):
        load_rules(tmp_path)
    (tmp_path / "r.yml").write_text(
        "description: d\nparams:\n  n: {type: integer, default: 0, min: 1}\n"
    )
    with pytest.raises(SegmentError, match="n=0 is not within bounds"):
        load_rules(tmp_path)


def test_a_greeting_whose_window_opens_after_its_expiry_counts_as_expired_not_deferred(
    con, settings
):
    """22:00 in Shanghai: the SMS window opens again at 09:00, after the greeting's day ends.
    It expires, and the run's figures say so once: it was never deferred to a window."""
    add_store(con)
    add_subscriber(con, "S1", email=None)  # Shanghai
    plan(con, settings)  # June 15, valid to midnight in Shanghai
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    [(planned,)] = con.execute("SELECT scheduled_at FROM care_actions").fetchall()
    figures = dispatch(con, sandbox, now=datetime(2026, 6, 15, 14, 0, tzinfo=UTC))
    # it keeps the time it was due, as the batch screen leaves what it expires
    rows = con.execute("SELECT status, scheduled_at FROM care_actions").fetchall()
    assert rows == [("expired", planned)]
    assert (figures.expired, figures.deferred_to_window) == (1, 0)
