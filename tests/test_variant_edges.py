"""Message variant tests as operators change them: a winner removed, a new test, a dry run."""

from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns.spec import CampaignError, StoppingRule
from core.errors import UserError
from tests.factories import add_sms_crowd, add_store
from tests.test_variants import (
    AS_OF,
    _birthday_with,
    _load,
    _plan,
    _rate,
    _test,
    _write,
    add_sms_crowd_from,
)

STOP = StoppingRule(p_best=0.99, min_outcomes=20, max_looks=30)


def _declare(con, settings, winner="warm"):
    """A test of 'warm' against 'standard' whose ``winner`` is declared on the second plan."""
    loser = "standard" if winner == "warm" else "warm"
    add_store(con)
    add_sms_crowd(con, 1200)
    loaded = _birthday_with(settings, _test(stop=STOP))
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    _rate(con, winner, 5, day, day + timedelta(hours=1))
    _rate(con, loser, 2, day, day + timedelta(hours=1))
    con.execute("UPDATE subscribers SET birthday = DATE '1990-06-16'")
    _plan(con, settings, loaded, as_of=AS_OF + timedelta(days=1), run="r2",
          now=day + timedelta(days=1))  # fmt: skip
    assert con.execute("SELECT variant FROM variant_winners").fetchall() == [(winner,)]
    return day


def _then_bold(con, settings, day):
    """A new test, bold vs standard, planned two days after ``day`` as run r3 (600 more
    customers, born on that day)."""
    fresh = _test(stop=STOP)
    fresh = fresh.model_copy(update={"messages": {"bold": fresh.messages["warm"]}})
    add_sms_crowd_from(con, 5000, 600, born=date(1990, 6, 17))
    _plan(con, settings, _birthday_with(settings, fresh), as_of=AS_OF + timedelta(days=2),
          run="r3", now=day + timedelta(days=2))  # fmt: skip


def test_a_plan_after_the_declared_winner_is_removed_from_the_file_does_not_crash(con, settings):
    """The operator edits the campaign file after the test ended: the winner's variant is
    renamed (or dropped). Planning must go on (or stop with a clear error naming the
    variant), never a bare ValueError from ``tuple.index``."""
    day = _declare(con, settings)
    renamed = _test(stop=STOP)
    renamed = renamed.model_copy(update={"messages": {"warmer": renamed.messages["warm"]}})
    loaded = _birthday_with(settings, renamed)
    con.execute("UPDATE subscribers SET birthday = DATE '1990-06-17'")
    try:
        _plan(con, settings, loaded, as_of=AS_OF + timedelta(days=2), run="r3",
              now=day + timedelta(days=2))  # fmt: skip
    except UserError as exc:
        assert "warm" in str(exc)
    # a ValueError ('tuple.index(x): x not in tuple') escapes today: the daily plan dies


def test_a_variant_test_without_a_survey_is_refused_when_the_file_loads(tmp_path, settings):
    """Both outcomes (csat, response) are read from the survey's ratings: a step with
    variants and no survey can never gather an outcome, so its test runs forever at
    min_share with nothing to learn. The file should be refused, naming the field."""

    def drop_survey(raw):
        raw["care"].pop("survey")

    with pytest.raises(CampaignError, match="survey"):
        _load(settings, _write(tmp_path, drop_survey))


def test_a_dry_run_that_would_declare_does_not_record_a_winner(con, settings):
    add_store(con)
    add_sms_crowd(con, 1200)
    loaded = _birthday_with(settings, _test(stop=STOP))
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, loaded, now=day)
    _rate(con, "warm", 5, day, day + timedelta(hours=1))
    _rate(con, "standard", 2, day, day + timedelta(hours=1))
    con.execute("UPDATE subscribers SET birthday = DATE '1990-06-16'")
    _plan(con, settings, loaded, as_of=date(2026, 6, 16), run="p", dry_run=True,
          now=day + timedelta(days=1))  # fmt: skip
    assert con.execute("SELECT count(*) FROM variant_winners").fetchone() == (0,)


def test_a_new_test_on_the_same_campaign_is_not_decided_by_the_last_one(con, settings):
    """A campaign's first test ends with its standard message the winner (the challenger
    lost). The operator writes a new challenger, 'bold', into the file. The new test must
    start as a test (each variant at least min_share, no winner), not inherit the old
    verdict (bold had only the monitor share, and the reports showed the old winner)."""
    day = _declare(con, settings, winner="standard")
    _then_bold(con, settings, day)
    shares = dict(con.execute(
        "SELECT variant, count(*) FROM care_actions WHERE run_id = 'r3' AND variant IS NOT NULL "
        "GROUP BY ALL").fetchall())  # fmt: skip
    total = sum(shares.values())
    assert shares.get("bold", 0) >= 0.1 * total, shares  # its min_share, as a new test
