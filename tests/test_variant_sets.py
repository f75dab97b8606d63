"""A variant test is its set of variants: a set brought back after another test ran."""

from datetime import UTC, date, datetime, timedelta

from campaigns import variants
from tests.factories import add_sms_crowd, add_store
from tests.test_variant_edges import STOP, _declare, _then_bold
from tests.test_variants import (
    AS_OF,
    _birthday_with,
    _plan,
    _rate,
    _test,
    add_sms_crowd_from,
)


def _shares(con, run):
    return dict(con.execute(
        "SELECT variant, count(*) FROM care_actions WHERE run_id = ? AND variant IS NOT NULL "
        "GROUP BY ALL", [run]).fetchall())  # fmt: skip


def test_a_set_brought_back_after_another_test_does_not_inherit_its_first_winner(con, settings):
    """warm vs standard ends with standard the winner; the operator then tests bold vs
    standard (one plan, no verdict yet) and goes back to warm vs standard. That test began
    after bold's sends (its tally and looks start afresh), so the first test's verdict is not
    its own: warm gets its minimum share, not the 5% monitor share."""
    day = _declare(con, settings, winner="standard")
    _then_bold(con, settings, day)
    assert _shares(con, "r3").get("bold", 0) > 0
    con.execute("UPDATE care_actions SET sent_at = created_at WHERE run_id = 'r3'")

    names = ("standard", "warm")
    began = variants.current_test_began(con, "birthday", names)
    assert began is not None  # the tally now ignores the first test's outcomes
    add_sms_crowd_from(con, 6000, 600, born=date(1990, 6, 18))
    _plan(con, settings, _birthday_with(settings, _test(stop=STOP)),
          as_of=AS_OF + timedelta(days=3), run="r4", now=day + timedelta(days=3))  # fmt: skip
    shares = _shares(con, "r4")
    total = sum(shares.values())
    # either the old verdict stands and its tally too, or the test is new on both counts
    assert shares.get("warm", 0) >= 0.1 * total, shares
    assert variants.recorded_winner(con, "birthday", names) is None, "a winner of an ended test"


def test_a_variant_added_to_a_running_test_joins_it(con, settings):
    """warm vs standard runs a plan, rated, no verdict. The operator adds 'bold': the test
    goes on (a challenger joins a running bandit), standard and warm keep their outcomes,
    and bold starts from its minimum share; renaming or removing a variant starts a new test
    (README: message variants)."""
    add_store(con)
    add_sms_crowd(con, 1200)
    day = datetime(2026, 6, 15, 2, tzinfo=UTC)
    _plan(con, settings, _birthday_with(settings, _test(stop=STOP)), now=day)
    _rate(con, "warm", 5, day, day + timedelta(hours=1))
    _rate(con, "standard", 4, day, day + timedelta(hours=1))
    three = _test(stop=STOP)
    three = three.model_copy(
        update={"messages": {**three.messages, "bold": three.messages["warm"]}}
    )
    loaded = _birthday_with(settings, three)
    counts = variants.tally(con, "birthday", loaded.campaign.care, day + timedelta(days=1), 72)
    kept = dict(zip(counts.names, counts.outcomes.tolist(), strict=True))
    assert kept["warm"] > 0 and kept["standard"] > 0 and kept["bold"] == 0
