"""Collect moves cases by what came since its last pass, not by every rating of every case
ever: a pass with nothing new reads no case rating, a rating collected late (given long ago)
still moves its case, and a second round's silence is looked for within the weeks a collect
may have been missed."""

from datetime import timedelta

from cases.collect import collect
from cases.lifecycle import MISSED_DAYS, SEEN
from tests.test_case_lifecycle import SECOND_SENT, WINDOW, one_case, rate, status


def case_ratings_read(con) -> int:
    return con.execute("SELECT count(*) FROM case_ratings").fetchone()[0]


def seen(con) -> int:
    return con.execute("SELECT value FROM ingest_state WHERE name = ?", [SEEN]).fetchone()[0]


def test_a_pass_with_no_new_rating_reads_none(con, settings):
    inbox = one_case(con, settings, "open")
    rate(settings, "R2", 5, SECOND_SENT + timedelta(hours=1))
    collect(con, inbox, reply_window=WINDOW)
    assert status(con) == "recovered" and case_ratings_read(con) == 1
    mark = seen(con)
    collect(con, inbox, reply_window=WINDOW)
    assert case_ratings_read(con) == 0 and seen(con) == mark
    rate(settings, "A-E1", 3, SECOND_SENT + timedelta(hours=2))  # another reply to the survey
    collect(con, inbox, reply_window=WINDOW)
    assert case_ratings_read(con) == 1 and seen(con) > mark


def test_a_rating_given_long_ago_and_collected_now_still_moves_its_case(con, settings):
    inbox = one_case(con, settings, "open")
    collect(con, inbox, reply_window=WINDOW)  # the pass has seen everything so far
    rate(settings, "R2", 4, SECOND_SENT + timedelta(minutes=5))  # landed only now
    collect(con, inbox, reply_window=WINDOW)
    assert status(con) == "recovered"


def test_a_silent_second_round_is_marked_within_the_weeks_a_collect_may_miss(con, settings):
    inbox = one_case(con, settings, "open")
    late = SECOND_SENT + WINDOW + timedelta(days=MISSED_DAYS - 1)
    collect(con, inbox, reply_window=WINDOW, now=late)
    assert status(con) == "unresolved"


def test_a_second_round_silent_for_longer_is_not_looked_at_again(con, settings):
    """Its event was made by the collects of those weeks; a pass does not re-read them all."""
    inbox = one_case(con, settings, "open")
    much_later = SECOND_SENT + WINDOW + timedelta(days=MISSED_DAYS + 1)
    collect(con, inbox, reply_window=WINDOW, now=much_later)
    assert status(con) == "open"


def test_a_second_round_falling_silent_while_collect_ran_without_now_for_weeks_is_marked(
    con, settings
):
    """Collect looked (with ``now``) while the second round was still in its window, then ran
    only without ``now`` (between dispatch's batches) for longer than MISSED_DAYS: the next
    look starts where the last one stopped, so the silence is not lost."""
    inbox = one_case(con, settings, "open")
    collect(con, inbox, reply_window=WINDOW, now=SECOND_SENT + timedelta(hours=1))
    assert status(con) == "open"
    weeks_later = SECOND_SENT + WINDOW + timedelta(days=MISSED_DAYS + 5)
    collect(con, inbox, reply_window=WINDOW, now=weeks_later)
    assert status(con) == "unresolved"
