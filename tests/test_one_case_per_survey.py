"""One complaint, one case: a survey opens at most one case and one second round, whatever the
customer sends after; a later rating in another round never hides a fresh complaint."""

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.catalog import load_campaigns
from cases.collect import collect
from cases.second_round import plan_second_round
from core.clock import business_date
from core.tokens import rating_links
from tests.factories import add_action, add_store, add_subscriber
from tests.service_helpers import PUBLIC_URL, sid, sms_form, twilio_post

PHONE = "+8613800000001"
OUR_NUMBER = "+15550001111"  # the number tests.service_helpers.sms_form answers


def _reply(client, body, n):
    form = sms_form(sid("SM", (body, n)), PHONE, body)
    posted = client.post("/webhooks/twilio/sms", **twilio_post("/webhooks/twilio/sms", form))
    assert posted.status_code == 200


def _second_round(con, settings, run):
    """Collect what the service took, then the second round, as the flows run them."""
    from inbox.inbox import Inbox

    collect(con, Inbox.of(settings), reply_window=timedelta(hours=72))
    now = datetime.now(UTC) + timedelta(hours=2)  # past the rule's delay
    campaign = load_campaigns(settings)["birthday"]
    return plan_second_round(
        con, settings, campaign, business_date(settings.zone, now), run, created_at=now
    )


def _counts(con):
    cases = con.execute("SELECT count(*) FROM manager_cases").fetchone()[0]
    second = con.execute("SELECT count(*) FROM care_actions WHERE round = 2").fetchone()[0]
    return cases, second


def test_two_sms_replies_to_one_survey_open_one_case_and_one_second_round(con, service):
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1")
    sent = datetime.now(UTC) - timedelta(hours=1)
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=sent, sender=OUR_NUMBER)
    _reply(client, "1 =cmd|' /C calc'!A0", 1)
    _second_round(con, settings, "r2-a")
    assert _counts(con) == (1, 1)
    _reply(client, "1 waited too long", 2)
    _second_round(con, settings, "r2-b")
    assert _counts(con) == (1, 1)  # the later reply opened nothing
    (comment, score) = con.execute("SELECT comment, score FROM manager_cases").fetchone()
    assert (comment, score) == ("waited too long", 1)  # the case says what they said last


def test_reposting_the_email_rating_page_updates_the_one_case(con, service):
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1", sms_consent=False, voice_consent=False)  # care by email only
    sent = datetime.now(UTC) - timedelta(hours=1)
    add_action(con, "A1", "S1", channel="email", recipient="c1@example.com", sent_at=sent)
    secret = settings.link_secret.get_secret_value()
    page = rating_links("A1", PUBLIC_URL, secret, datetime.now(UTC))[1].removeprefix(PUBLIC_URL)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(page, content="comment=rude", headers=form).status_code == 200
    _second_round(con, settings, "r2-a")
    assert _counts(con) == (1, 1)
    for comment in ("rude staff", "rude staff, and slow"):
        assert client.post(page, content=f"comment={comment}", headers=form).status_code == 200
        _second_round(con, settings, f"r2-{comment}")
    assert _counts(con) == (1, 1)
    assert con.execute("SELECT comment FROM manager_cases").fetchone() == ("rude staff, and slow",)
    emails = con.execute("SELECT count(*) FROM care_actions WHERE round = 2 AND channel = 'email'")
    assert emails.fetchone() == (1,)


def test_a_later_rating_in_another_round_does_not_hide_a_fresh_complaint(con, service):
    """A first-round "1", then minutes later a "5" to another survey's second round: the
    complaint still gets its second round and its case."""
    client, _inbox, settings = service
    add_store(con)
    add_subscriber(con, "S1")
    before = datetime.now(UTC) - timedelta(hours=3)
    add_action(con, "OLD2", "S1", round=2, recipient=PHONE, sent_at=before, sender=OUR_NUMBER)
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=before, sender="+15550002222")
    # "1" to the first-round survey (sent from another of our numbers), then "5" to OLD2
    form = sms_form(sid("SM", 1), PHONE, "1 排队太久了") | {"To": "+15550002222"}
    client.post("/webhooks/twilio/sms", **twilio_post("/webhooks/twilio/sms", form))
    _reply(client, "5", 2)
    second = _second_round(con, settings, "r2")
    assert second.figures["cases_opened"] == 1
    assert con.execute("SELECT comment FROM manager_cases").fetchone() == ("排队太久了",)


def _rated_world(con):
    """Dissatisfied and satisfied customers of three campaigns, their ratings collected."""
    from warehouse.ratings import rebuild_ratings

    add_store(con)
    sent = datetime(2026, 3, 1, 2, tzinfo=UTC)
    campaigns = ["birthday", "birthday", "tenure", "tenure", "store_visit", "birthday"]
    for n, campaign in enumerate(campaigns):
        add_subscriber(con, f"S{n}")
        add_action(con, f"A{n}", f"S{n}", campaign=campaign, sent_at=sent)
        con.execute(
            "INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, "
            "campaign_id, round, store_id, channel, intent, score, attribution, received_at) "
            "VALUES (?, ?, ?, ?, ?, 1, 'ST1', 'sms', 'rating', ?, 'matched', ?)",
            [f"E{n}", f"k{n}", f"A{n}", f"S{n}", campaign, [1, 2, 5, 1, 2, 4][n],
             sent + timedelta(minutes=10 + n)],
        )  # fmt: skip
    rebuild_ratings(con)


def _planned(con):
    outbox = con.execute(
        "SELECT campaign_id, subscriber_id, occasion, parent_evaluation_id FROM care_actions "
        "WHERE round = 2 ORDER BY ALL"
    ).fetchall()
    cases = con.execute(
        "SELECT evaluation_id, campaign_id, second_round_action_id IS NOT NULL "
        "FROM manager_cases ORDER BY ALL"
    ).fetchall()
    return outbox, cases


def test_every_campaigns_second_round_from_one_reading_is_each_ones_own(con, settings, tmp_path):
    """The flow reads the day's dissatisfied once for every campaign: each campaign plans and
    opens what it would have from its own reading, and a campaign's plan, made first, leaves
    the next one's members as they were."""
    from campaigns.planning import second_round_segment
    from warehouse.db import connect

    campaigns = load_campaigns(settings)
    as_of, at = datetime(2026, 3, 1).date(), datetime(2026, 3, 1, 6, tzinfo=UTC)
    _rated_world(con)
    shared = second_round_segment(con, campaigns["birthday"].second_round_rule, as_of, "seg")
    together = {
        name: plan_second_round(con, settings, c, as_of, f"r2-{name}", at, segment=shared)
        for name, c in campaigns.items()
    }
    alone_con = connect(tmp_path / "alone.duckdb")
    try:
        _rated_world(alone_con)
        alone = {
            name: plan_second_round(alone_con, settings, c, as_of, f"r2-{name}", at)
            for name, c in campaigns.items()
        }
        assert _planned(con) == _planned(alone_con)
    finally:
        alone_con.close()
    assert {n: p.figures["targeted"] for n, p in together.items()} == {
        n: p.figures["targeted"] for n, p in alone.items()
    }
    assert sorted(case for case, _, _ in _planned(con)[1]) == ["E0", "E1", "E3", "E4"]


def test_only_the_second_rounds_segment_is_shared(con, settings):
    from campaigns.planning import second_round_segment

    birthday = load_campaigns(settings)["birthday"]
    with pytest.raises(ValueError, match="birthday: only the second round's segment"):
        second_round_segment(con, birthday.rule, datetime(2026, 3, 1).date(), "seg")


def _one_complaint(con, rated):
    from warehouse.ratings import rebuild_ratings

    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", sent_at=rated - timedelta(hours=1))
    con.execute(
        "INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, "
        "campaign_id, round, store_id, channel, intent, score, attribution, received_at) "
        "VALUES ('E1', 'k1', 'A1', 'S1', 'birthday', 1, 'ST1', 'sms', 'rating', 1, 'matched', ?)",
        [rated],
    )
    rebuild_ratings(con)


@pytest.mark.parametrize("behind", [timedelta(hours=1), timedelta(days=50)])
@pytest.mark.parametrize("later_day", [0, 1])
@pytest.mark.parametrize("shared", [False, True])
def test_a_complaint_planned_by_a_clock_behind_its_rating_is_not_planned_again(
    con, settings, behind, later_day, shared
):
    """The first plan's clock was behind the rating (by more than the rule's own look back for
    earlier second rounds, at 50 days): the next plan still finds its care by key, from its
    own reading of the dissatisfied or the one the flow shares between campaigns."""
    from campaigns.planning import second_round_segment

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    birthday = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, birthday, rated.date(), "r2-a", created_at=rated - behind)
    day = rated.date() + timedelta(days=later_day)
    segment = second_round_segment(con, birthday.second_round_rule, day, "seg") if shared else None
    again = plan_second_round(
        con, settings, birthday, day, "r2-b", rated + timedelta(days=1), segment=segment
    )
    # an hour behind, the rule itself knows the survey had its second round; 50 days, the key
    found_by_key = 1 if behind > timedelta(days=40) else 0
    assert again.figures["targeted"] == again.figures["already_planned"] == found_by_key
    assert again.figures.get("cases_opened", 0) == 0
    assert _counts(con) == (1, 1)


@pytest.mark.parametrize("later_day", [0, 1])
def test_a_second_round_written_after_the_shared_reading_is_found_by_a_plan_from_it(
    con, settings, later_day
):
    """A second round written after the shared reading, by another way (a plan alone, on the
    same connection), is found by a plan from that reading: the complaint is neither planned
    twice (another day's action id) nor refused by the outbox's key (the same day's)."""
    from campaigns.planning import second_round_segment

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    birthday = load_campaigns(settings)["birthday"]
    segment = second_round_segment(con, birthday.second_round_rule, rated.date(), "seg")
    at = rated + timedelta(hours=2)
    day = rated.date() + timedelta(days=later_day)
    plan_second_round(con, settings, birthday, day, "r2-alone", at)
    again = plan_second_round(con, settings, birthday, rated.date(), "r2-b", at, segment=segment)
    assert again.figures["already_planned"] == 1
    assert _counts(con) == (1, 1)


def test_a_plan_from_a_segment_not_read_for_sharing_looks_its_keys_up(con, settings):
    """A plan given a table of members read otherwise (``materialize``) finds the outbox's
    keys for it by itself."""
    from segments.registry import materialize

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    birthday = load_campaigns(settings)["birthday"]
    at = rated + timedelta(hours=2)
    materialize(con, birthday.second_round_rule, rated.date(), "mine")
    plan_second_round(con, settings, birthday, rated.date(), "r2-a", at)
    again = plan_second_round(con, settings, birthday, rated.date(), "r2-b", at, segment="mine")
    assert (again.figures["targeted"], again.figures["already_planned"]) == (1, 1)
    assert _counts(con) == (1, 1)


def test_a_segment_filled_again_under_its_name_has_its_keys_looked_for_again(con, settings):
    """A table first read for sharing (one day's dissatisfied), then filled again under its
    name with other members: a plan from it finds the new members' care planned."""
    from campaigns.planning import second_round_segment
    from segments.registry import materialize

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    birthday = load_campaigns(settings)["birthday"]
    # planned 50 days behind the rating: the rule still takes it, the key says it is planned
    plan_second_round(con, settings, birthday, rated.date(), "r2-a", rated - timedelta(days=50))
    rule = birthday.second_round_rule
    second_round_segment(con, rule, rated.date() - timedelta(days=1), "seg")  # nobody yet
    materialize(con, rule, rated.date(), "seg")
    again = plan_second_round(con, settings, birthday, rated.date(), "r2-b", rated, segment="seg")
    assert (again.figures["targeted"], again.figures["already_planned"]) == (1, 1)
    assert _counts(con) == (1, 1)


def test_a_first_round_on_the_dissatisfied_finds_its_own_care(con, settings):
    """A campaign whose own segment is the dissatisfied plans its first round from that
    reading too: a rerun the same day finds its first-round care (its keys end in round 1,
    not 2)."""
    from dataclasses import replace

    from campaigns.planning import Plan, run_steps
    from warehouse.db import transaction

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    loaded = load_campaigns(settings)["birthday"]
    on_complaints = replace(loaded, rule=loaded.second_round_rule, care=loaded.second_round)
    at = rated + timedelta(hours=2)
    for run in ("a", "b"):
        plan = Plan(con, settings, on_complaints, rated.date(), round=1, run_id=run, created_at=at)
        with transaction(con):
            run_steps(plan)
    assert (plan.figures["targeted"], plan.figures["already_planned"]) == (1, 1)
    count = con.execute("SELECT count(*) FROM care_actions WHERE run_id = 'a'").fetchone()
    assert count == (1,)


def test_a_campaign_planned_twice_from_one_shared_reading_plans_its_complaints_once(con, settings):
    """A second plan of a campaign from the same shared reading of the dissatisfied finds
    the care the first one wrote (rather than writing it again)."""
    from campaigns.planning import second_round_segment

    rated = datetime(2026, 3, 1, 3, tzinfo=UTC)
    _one_complaint(con, rated)
    birthday = load_campaigns(settings)["birthday"]
    segment = second_round_segment(con, birthday.second_round_rule, rated.date(), "seg")
    at = rated + timedelta(hours=2)
    first = plan_second_round(con, settings, birthday, rated.date(), "r2-a", at, segment=segment)
    again = plan_second_round(con, settings, birthday, rated.date(), "r2-b", at, segment=segment)
    assert first.figures["already_planned"] == 0 and again.figures["already_planned"] == 1
    assert _counts(con) == (1, 1)
