import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns.catalog import load_campaigns
from campaigns.planning import Plan, run_steps
from tests.factories import add_sms_crowd, add_store, add_subscriber, add_visit

AS_OF = date(2026, 6, 15)  # the factory's default birthday is June 15


def plan(con, settings, name="birthday", as_of=AS_OF, holdout=0.0, run="r1"):
    return plan_loaded(con, settings, load_campaigns(settings)[name], as_of, holdout, run)


def plan_loaded(con, settings, loaded, as_of=AS_OF, holdout=0.0, run="r1"):
    """Plan ``loaded`` as of ``as_of`` (``holdout`` None keeps the campaign's own). With no
    exploration share: a learned send time's random hours (tests/test_send_time.py covers
    them) would leave a few actions due later than the test's moment."""
    changes = {"send_time_explore_percent": 0.0}
    if holdout is not None:
        changes["holdout_percent"] = holdout
    loaded = dataclasses.replace(loaded, campaign=loaded.campaign.model_copy(update=changes))
    p = Plan(con, settings, loaded, as_of, round=1, run_id=run)
    run_steps(p)
    return p


def outbox(con):
    return {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT subscriber_id, status, suppression_reason, channel, recipient FROM care_actions"
        ).fetchall()
    }


def test_channel_choice_and_suppression_reasons(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2", phone=None)
    add_subscriber(con, "S3", phone=None, email=None)
    add_subscriber(con, "S4", sms_consent=False, email_consent=False, voice_consent=False)
    add_subscriber(con, "S5", email=None, voice_consent=False)
    con.execute(
        "INSERT INTO opt_outs VALUES ('S5', 'sms', 'opt_out', '2026-01-01', 'sms_reply', 'e1')"
    )
    p = plan(con, settings)
    assert outbox(con) == {
        "S1": ("queued", None, "sms", "+8613800000001"),
        "S2": ("queued", None, "email", "c2@example.com"),
        "S3": ("suppressed", "no_contact", None, None),
        "S4": ("suppressed", "no_consent", None, None),
        "S5": ("suppressed", "opted_out", None, None),
    }
    assert p.figures["queued"] == {"sms": 1, "email": 1}
    assert p.figures["suppressed"] == {"no_contact": 1, "no_consent": 1, "opted_out": 1}


def test_opt_in_after_opt_out_restores_the_channel(con, settings):
    add_store(con)
    add_subscriber(con, "S1")
    con.execute(
        "INSERT INTO opt_outs VALUES ('S1', 'sms', 'opt_out', '2026-01-01', 'r', 'e1'),"
        " ('S1', 'sms', 'opt_in', '2026-02-01', 'r', 'e2')"
    )
    plan(con, settings)
    assert outbox(con)["S1"][:3] == ("queued", None, "sms")


def test_content_is_rendered_per_locale_and_tier(con, settings):
    add_store(con)
    add_subscriber(con, "S1", tier="gold")
    add_subscriber(con, "S2", tier="platinum", locale="en", name="Mary Smith", phone=None)
    plan(con, settings)
    rows = dict(con.execute("SELECT subscriber_id, body FROM care_actions").fetchall())
    offers = dict(con.execute("SELECT subscriber_id, offer_code FROM care_actions").fetchall())
    assert offers == {"S1": "BDAY-10GB", "S2": "BDAY-VIP"}
    assert rows["S1"].startswith("客户1，祝您36岁生日快乐！我们为您准备了10GB 流量包")
    assert rows["S1"].endswith("回复1-5打分（5=非常满意）。回复TD退订")
    assert rows["S2"].startswith("Dear Mary Smith,\nHappy 36th birthday!")
    assert rows["S2"].count("/r/") == 5 and "/unsubscribe/" in rows["S2"]


def test_only_the_chosen_channel_is_rendered(con, settings, monkeypatch):
    from campaigns.content import StepRenderer

    rendered = []
    real = StepRenderer.render

    def counting(self, channel, action_id, context, issued):
        if action_id != "ca_sample":  # loading the campaign measures a sample SMS
            rendered.append((context["subscriber_id"], channel))
        return real(self, channel, action_id, context, issued)

    monkeypatch.setattr(StepRenderer, "render", counting)
    add_store(con)
    add_subscriber(con, "S1")  # SMS first
    add_subscriber(con, "S2", phone=None)  # email
    add_subscriber(con, "S3", phone=None, email=None)  # unreachable: nothing to render
    plan(con, settings)
    assert sorted(rendered) == [("S1", "sms"), ("S2", "email")]
    segments = dict(con.execute("SELECT subscriber_id, segments FROM care_actions").fetchall())
    assert segments["S1"] >= 1 and segments["S2"] is None and segments["S3"] is None


def test_send_time_is_local_and_calls_wait_for_the_window(con, settings):
    add_store(con)
    add_store(con, store_id="ST2", name="NY", timezone="America/New_York")
    add_subscriber(con, "S1")
    add_subscriber(
        con,
        "S2",
        timezone="America/New_York",
        home_store_id="ST2",
        phone="+12125550100",
        locale="en",
    )
    # A visit at 20:30 Shanghai time: due 22:30, after the window, so it waits until 09:00.
    add_visit(con, "V1", "S1", datetime(2026, 6, 15, 12, 30, tzinfo=UTC))
    plan(con, settings)
    times = dict(con.execute("SELECT subscriber_id, scheduled_at FROM care_actions").fetchall())
    assert times["S1"] == datetime(2026, 6, 15, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert times["S2"] == datetime(2026, 6, 15, 14, 0, tzinfo=UTC)  # 10:00 in New York (EDT)
    plan(con, settings, "store_visit", run="r2")
    visit = con.execute(
        "SELECT scheduled_at FROM care_actions WHERE campaign_id = 'store_visit'"
    ).fetchone()[0]
    assert visit == datetime(2026, 6, 16, 1, 0, tzinfo=UTC)  # 09:00 next day, Shanghai


def test_frequency_cap_spans_campaigns(con, settings):
    add_store(con)
    add_subscriber(con, "S1", joined_on=date(2025, 6, 15))  # birthday and 1-year anniversary
    add_subscriber(con, "S2", birthday=date(1990, 1, 1), joined_on=date(2025, 6, 15))
    plan(con, settings, "birthday")
    p = plan(con, settings, "tenure", run="r2")
    rows = con.execute(
        "SELECT campaign_id, subscriber_id, status, suppression_reason "
        "FROM care_actions ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("birthday", "S1", "queued", None),
        ("tenure", "S1", "suppressed", "capped"),
        ("tenure", "S2", "queued", None),
    ]
    assert p.figures["suppressed"] == {"capped": 1}


def test_rerun_contacts_nobody_twice(con, settings):
    add_store(con)
    for n in range(1, 6):
        add_subscriber(con, f"S{n}")
    first = plan(con, settings, holdout=None)
    second = plan(con, settings, holdout=None, run="r2")
    assert con.execute("SELECT count(*) FROM care_actions").fetchone()[0] == 5
    assert second.figures["already_planned"] == 5
    assert second.figures.get("queued") == {} and first.figures["targeted"] == 5


def test_a_key_in_the_outbox_under_another_id_is_not_planned_again(con, settings):
    """The outbox's one unique key is the action id (the key's hash, when planning made it).
    An action kept under another id (the demo's past surveys) still counts as planned."""
    add_store(con)
    add_subscriber(con, "S1")
    first = plan(con, settings, holdout=None)
    con.execute("UPDATE care_actions SET action_id = 'ca_made_elsewhere'")
    again = plan(con, settings, holdout=None, run="r2")
    assert first.figures["targeted"] == 1 and again.figures["already_planned"] == 1
    assert con.execute("SELECT action_id FROM care_actions").fetchall() == [("ca_made_elsewhere",)]


def test_holdout_is_deterministic_and_near_its_share(con, settings):
    add_store(con)
    add_sms_crowd(con, 2000)

    p = plan(con, settings, holdout=10.0)
    held = {
        r[0]
        for r in con.execute(
            "SELECT subscriber_id FROM care_actions WHERE status = 'held_out'"
        ).fetchall()
    }
    assert 150 <= len(held) <= 250 and p.figures["held_out"] == len(held)
    con.execute("DELETE FROM care_actions")
    plan(con, settings, holdout=10.0, run="r2")
    again = {
        r[0]
        for r in con.execute(
            "SELECT subscriber_id FROM care_actions WHERE status = 'held_out'"
        ).fetchall()
    }
    assert again == held


@pytest.mark.parametrize("tier", ["standard", "silver", "gold", "platinum"])
def test_every_tier_gets_an_offer(con, settings, tier):
    add_store(con)
    add_subscriber(con, "S1", tier=tier)
    plan(con, settings)
    assert con.execute("SELECT offer_code FROM care_actions").fetchone()[0].startswith("BDAY-")


def test_an_action_id_made_in_python_is_the_one_a_plan_makes(con):
    """Follow-ups make their ids in Python, plans in SQL: the same day and key, the same id."""
    from campaigns.planning import ACTION_ID, action_id

    key = "birthday|S1|2026-06-15|1"
    [(in_sql,)] = con.execute(
        f"SELECT {ACTION_ID} FROM (SELECT ? AS idempotency_key)", [AS_OF, key]
    ).fetchall()
    assert in_sql == action_id(AS_OF, key) and in_sql.startswith("ca_20260615")
    assert len(in_sql) == len("ca_") + 24  # as long as before: it travels in every link


def test_a_member_who_left_is_counted_as_left_not_as_unknown(con, settings):
    """The content step counted them as "unknown subscribers", though they were known: they
    had left the operator by the as-of date."""
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2", left_on=date(2026, 5, 1))
    figures = plan(con, settings).figures
    assert figures["targeted"] == 2 and figures["left_or_unknown"] == 1
    assert "unknown_subscribers" not in figures


def test_members_sharing_a_number_are_asked_once_on_it(con, settings):
    """S1 and S2, a household on one phone, got the same survey at the same moment, and
    every answer went to one of them (a reply is the latest survey's to its number). S5 is
    asked by email; S2 has none, and gets the greeting and its gift on the number without
    the survey (it was suppressed, its care lost). S3's text goes: S4, who shares its
    number, has no consent for texts or calls."""
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2", phone="+8613800000001", email=None)
    add_subscriber(con, "S5", phone="+8613800000001")  # asked by email instead
    add_subscriber(con, "S3")
    add_subscriber(con, "S4", phone="+8613800000003", sms_consent=False, voice_consent=False)
    p = plan(con, settings)
    assert outbox(con) == {
        "S1": ("queued", None, "sms", "+8613800000001"),
        "S2": ("queued", None, "sms", "+8613800000001"),
        "S5": ("queued", None, "email", "c5@example.com"),
        "S3": ("queued", None, "sms", "+8613800000003"),
        "S4": ("queued", None, "email", "c4@example.com"),
    }
    assert p.figures["suppressed"] == {}
    assert p.figures["queued"] == {"sms": 3, "email": 2}
    asked = dict(con.execute("SELECT subscriber_id, survey FROM care_actions").fetchall())
    assert asked == {"S1": True, "S2": False, "S5": True, "S3": True, "S4": True}
    texts = dict(con.execute("SELECT subscriber_id, body FROM care_actions").fetchall())
    assert "回复1-5打分" in texts["S1"] and "回复1-5打分" not in texts["S2"]
    assert "生日快乐" in texts["S2"] and texts["S2"].endswith("回复TD退订")
    [(subject, body)] = con.execute(
        "SELECT subject, body FROM care_actions WHERE subscriber_id = 'S5'"
    ).fetchall()
    assert subject and "/r/" in body  # the email's own message, with its rating links


def test_a_household_is_not_called_twice_at_once(con, settings):
    """Given the care without the survey, S2's call rang at the moment S1's did, and a key
    pressed on it was read as S2's rating of a call that asked nothing."""
    add_store(con)
    add_subscriber(con, "S1", email=None, sms_consent=False)
    add_subscriber(con, "S2", phone="+8613800000001", email=None, sms_consent=False)
    plan(con, settings)
    got = outbox(con)
    assert got["S1"] == ("queued", None, "voice", "+8613800000001")
    assert got["S2"][:2] == ("suppressed", "shared_number")
    # texted on the number, the other is called: one call, without the survey
    con.execute("DELETE FROM care_actions")
    con.execute("UPDATE subscribers SET sms_consent = true WHERE subscriber_id = 'S1'")
    plan(con, settings, run="r2")
    got = outbox(con)
    assert got["S1"] == ("queued", None, "sms", "+8613800000001")
    assert got["S2"] == ("queued", None, "voice", "+8613800000001")
    asked = dict(con.execute("SELECT subscriber_id, survey FROM care_actions").fetchall())
    assert asked == {"S1": True, "S2": False}


def test_a_call_moved_to_email_leaves_the_number_to_the_next_call(con, settings):
    """S2's call, moved to email, was counted the number's first call, and S3's, the only
    call left, was suppressed: the number was not called at all."""
    add_store(con)
    add_subscriber(con, "S1", email=None, voice_consent=False)  # texted, asked
    add_subscriber(con, "S2", phone="+8613800000001", sms_consent=False)  # emailed
    add_subscriber(con, "S3", phone="+8613800000001", email=None, sms_consent=False)
    loaded = load_campaigns(settings)["birthday"]
    care = loaded.campaign.care.model_copy(update={"channels": ["voice", "sms", "email"]})
    campaign = loaded.campaign.model_copy(update={"care": care})
    plan_loaded(con, settings, dataclasses.replace(loaded, campaign=campaign))
    got = {k: v[:3] for k, v in outbox(con).items()}
    assert got == {
        "S1": ("queued", None, "sms"),
        "S2": ("queued", None, "email"),
        "S3": ("queued", None, "voice"),
    }


def test_a_plan_with_no_members_reports_its_standard_step_as_every_campaign_does(con, settings):
    """An empty birthday plan said "send time (learned 0, fallback 0)" where tenure's said
    "queued none, suppressed none, held out 0"."""
    add_store(con)
    p = plan(con, settings)
    assert p.figures["queued"] == {} and "send_time" not in p.figures


def test_a_member_asked_by_email_for_a_shared_number_goes_at_the_emails_time(con, settings):
    """Moved to email after its text was put in the send window, the survey kept the text's
    time: a visit at 21:30 was asked the next morning, not two hours after the visit."""
    add_store(con)
    add_subscriber(con, "S1", email=None)
    add_subscriber(con, "S2", phone="+8613800000001")
    visited = datetime(2026, 3, 1, 13, 30, tzinfo=UTC)  # 21:30 in Shanghai
    add_visit(con, "V1", "S1", visited)
    add_visit(con, "V2", "S2", visited)
    plan(con, settings, "store_visit", as_of=date(2026, 3, 1))
    sent = dict(con.execute("SELECT channel, scheduled_at FROM care_actions").fetchall())
    assert sent["email"] == visited + timedelta(minutes=120)  # due two hours after the visit
    assert sent["sms"] == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00, the window's opening


def test_a_rules_date_and_whole_numbers_read_in_a_message_as_written(con, settings, tmp_path):
    """Read through pandas on their way to the templates, a DATE became a midnight
    ("1990-06-15 00:00:00") and a whole number beside a NULL a float ("36.0"); a NULL was
    written "None"."""
    from campaigns.catalog import load_campaign
    from campaigns.spec import DEFINITIONS_DIR
    from segments.registry import RULES_DIR, load_rules

    rules = tmp_path / "rules"
    rules.mkdir()
    for builtin in RULES_DIR.glob("*.[sy][qm][l]"):
        (rules / builtin.name).write_text(builtin.read_text())
    (rules / "born.sql").write_text(
        "SELECT b.*, p.birthday AS born, CASE WHEN b.subscriber_id = 'S2' THEN NULL "
        "ELSE b.age END AS years, INTERVAL 3 DAY AS waited FROM ("
        + (RULES_DIR / "birthday.sql").read_text()
        + ") b "
        "JOIN subscriber_profile p USING (subscriber_id)"
    )
    (rules / "born.yml").write_text(
        "description: birthdays, with the day\n"
        "columns: {occasion: the year, age: years, born: the day, years: or NULL, waited: x}\n"
    )
    definition = (DEFINITIONS_DIR / "birthday.yaml").read_text()
    greeting = "{{ name }}，祝您{{ age }}岁生日快乐！"
    assert greeting in definition
    definition = definition.replace("segment: birthday", "segment: born").replace(
        greeting, "{{ name }}，{{ born }}，{{ years }}岁！{{ waited }}"
    )
    (tmp_path / "born.yaml").write_text(definition)
    loaded = load_campaign(tmp_path / "born.yaml", load_rules(rules), settings)
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2")
    plan_loaded(con, settings, loaded)
    bodies = dict(con.execute("SELECT subscriber_id, body FROM care_actions").fetchall())
    # an interval (polars takes none from Arrow: the plan stopped) as its text
    assert bodies["S1"].startswith("客户1，1990-06-15，36岁！3 days"), bodies["S1"]
    assert bodies["S2"].startswith("客户2，1990-06-15，岁！3 days"), bodies["S2"]  # NULL: nothing
