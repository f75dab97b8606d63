"""Races at a dispatch run's edges: what is planned or collected while it goes on."""

from datetime import UTC, datetime

from campaigns.catalog import load_campaigns
from campaigns.dispatch import dispatch
from campaigns.planning import Plan, run_steps
from tests.factories import add_store, add_subscriber
from tests.test_dispatch import LATER, provider, statuses
from tests.test_planning import AS_OF


def test_an_action_planned_during_a_run_with_an_older_created_at_is_sent_or_counted(con, settings):
    """A plan run with an injected ``now`` (a backfill, a replayed day) while a dispatch run
    goes on creates actions older than the run's horizon: they are due now, but the run
    neither sends them nor counts them as waiting."""
    add_store(con)
    add_subscriber(con, "S1")
    birthday = load_campaigns(settings)["birthday"]

    def plan_as_of(run_id, created_at):
        run_steps(Plan(con, settings, birthday, AS_OF, 1, run_id, created_at=created_at))

    plan_as_of("r1", datetime(2026, 6, 15, 1, 0, tzinfo=UTC))
    calls = []

    def concurrent_plan():
        # the run's second look at the news (its first batch): meanwhile another flow's
        # plan took its turn, with an injected now an hour before the first plan's
        calls.append(1)
        if len(calls) == 2:
            add_subscriber(con, "S2")
            plan_as_of("r2", datetime(2026, 6, 15, 0, 0, tzinfo=UTC))

    figures = dispatch(con, provider(settings), now=LATER, refresh=concurrent_plan)
    got = statuses(con)
    assert got["S1"] == "sent"
    # S2's action is queued and due by LATER: either sent in this run or reported waiting.
    assert got["S2"] == "sent" or figures.waiting == 1, (got, figures.waiting)


def test_a_stop_collected_just_before_a_batch_stops_that_batch(con, settings, inbox_url):
    """A live run reads the clock, then collects the news, then applies the standard as of the
    clock it read: a STOP that arrived in between (or whose time comes from a service host a
    second ahead) is collected into opt_outs and still ignored for this batch."""
    from datetime import timedelta

    from cases.collect import NewsWatch
    from inbox.inbox import Inbox

    add_store(con)
    add_subscriber(con, "S1")
    run_steps(
        Plan(con, settings, load_campaigns(settings)["birthday"], AS_OF, round=1, run_id="r1")
    )
    inbox = Inbox(inbox_url)
    watch = NewsWatch(lambda: con, inbox, timedelta(hours=72))
    calls = []

    def news():
        calls.append(1)
        if len(calls) == 2:  # the first batch's look: the customer's STOP has just come in
            inbox.put(
                "sms",
                "SMstop",
                LATER + timedelta(seconds=1),
                {
                    "MessageSid": "SMstop",
                    "From": "+8613800000001",
                    "To": "+10000000000",
                    "Body": "STOP",
                },
            )
        return watch()

    from tests.test_dispatch import CountingSandbox

    sandbox = CountingSandbox(settings.sandbox_path, inbox)
    dispatch(con, sandbox, now=LATER, clock=lambda: LATER, refresh=news)
    opted = con.execute("SELECT subscriber_id, channel FROM active_opt_outs ORDER BY ALL")
    assert opted.fetchall() == [
        ("S1", "sms"),
        ("S1", "voice"),
    ]  # collected before the batch was claimed...
    assert statuses(con) == {"S1": "suppressed"} and not sandbox.handed  # ...yet sent
