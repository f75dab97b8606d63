"""The fixed hour's head start when the fixed time is not on the hour."""

import dataclasses
from datetime import UTC, date, datetime, time

from campaigns.catalog import load_campaigns
from campaigns.planning import Plan, run_steps
from tests.factories import add_store, add_subscriber
from tests.test_send_time import add_history


def test_a_customer_kept_at_the_fixed_hour_is_sent_at_the_fixed_time(con, settings):
    """send_time_fallback "10:30": a customer whose every 10:30 send was answered (and who
    never had another hour) keeps hour 10, helped by the fixed hour's MIN_GAIN head start,
    and is sent at the fixed time itself, 10:30, not at 10:00."""
    as_of, zone = date(2026, 6, 15), "Asia/Shanghai"
    add_store(con)
    add_subscriber(con, "Z1", timezone=zone, birthday=as_of.replace(1990))
    add_history(con, "Z1", [10] * 30, [True] * 30, zone)
    loaded = load_campaigns(settings)["birthday"]
    changes = {"holdout_percent": 0.0, "send_time": "learned",
               "send_time_fallback": time(10, 30), "send_time_explore_percent": 0.0}  # fmt: skip
    loaded = dataclasses.replace(loaded, campaign=loaded.campaign.model_copy(update=changes))
    created = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    run_steps(Plan(con, settings, loaded, as_of, round=1, run_id="r1", created_at=created))
    [(local, source)] = con.execute(
        "SELECT timezone(?, scheduled_at), send_time_source FROM care_actions WHERE run_id='r1'",
        [zone],
    ).fetchall()
    assert local.time() == time(10, 30), (local, source)
