"""careloop report on any warehouse: empty, part of a loop, campaigns with no ratings yet."""

import contextlib
import csv
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from campaigns.catalog import load_campaigns
from campaigns.planning import STEPS
from cases.collect import collect
from cases.second_round import plan_second_round
from core.progress import reporting
from inbox.inbox import Inbox
from insights.report import loop_report, summary_rows, write_reports, write_store_lists
from tests.factories import add_action, add_store, add_subscriber
from warehouse.db import connect

ZONE = "Asia/Shanghai"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def test_the_report_works_on_an_empty_warehouse_and_a_campaign_with_no_ratings(con, settings):
    empty = write_reports(con, settings.reports_dir, "empty", ZONE)
    text = empty.path.read_text()
    assert "| **all** | 0 | 0 | 0 | 0 (0/0/0) | 0 | - |" in text
    assert "No first-round care planned in this period (Asia/Shanghai); cases opened" in text
    assert "- sla compliance: -" in text  # no figure is "-" as in every table, not "None"
    # an empty section says so, and no sentence holds a "-%" ("(-% of the cases ...)")
    for section in ("Suppressed, by reason", "Replies, by attribution"):
        assert text.split(f"## {section}")[1].split("##")[0].strip().endswith("- none"), section
    assert "-%" not in text and "per case whose SLA has passed or that was contacted." in text
    figures = dict(summary_rows(loop_report(con, ZONE)))
    assert (
        figures["CSAT (% of ratings 4-5)"] is None
        and figures["response rate (% of surveys rated)"] is None
    )
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=T0)
    report = loop_report(con, ZONE)
    assert report.totals()["csat"] is None and report.totals()["sent"] == 1
    assert report.totals()["response_rate"] == 0.0 and report.totals()["recovery_rate"] is None
    write_reports(con, settings.reports_dir, "no ratings yet", ZONE)


def test_a_partial_loop_reports_its_period_rates_opt_outs_and_store_lists(con, settings):
    add_store(con)
    add_store(con, store_id="ST2", name="纽约店", timezone="America/New_York")
    for n, store in enumerate(["ST1", "ST1", "ST2", "ST1"], start=1):
        add_subscriber(con, f"S{n}", home_store_id=store)
        add_action(con, f"A{n}", f"S{n}", recipient=f"+86138{n:08d}", sent_at=T0, store_id=store)
    inbox = Inbox(settings.inbox_path)
    replies = ["1 排队太久了", "5", "2 staff were rude", "TD"]  # from S1 to S4
    for n, body in enumerate(replies, start=1):
        phone = f"+86138{n:08d}"
        inbox.put(
            "sms",
            f"SM{n}",
            T0 + timedelta(minutes=n),
            {"MessageSid": f"SM{n}", "From": phone, "To": "+10000000000", "Body": body},
        )
    collect(con, inbox, reply_window=timedelta(hours=72))
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0)
    con.execute(  # S1's second round was rated 5: recovered; S3's case stays open
        "UPDATE manager_cases SET status = 'recovered', recovered_score = 5 "
        "WHERE subscriber_id = 'S1'"
    )
    written = write_reports(con, settings.reports_dir, "partial", ZONE, now=T0 + timedelta(1))
    total = written.report.totals()
    assert (total["surveyed"], total["replied"], total["rated"]) == (4, 4, 3)
    assert total["response_rate"] == 75.0  # the opt-out is a reply, not an answer
    # S3's second round has not gone yet: its outcome is not due, so it is not counted as
    # not recovered (the monthly report's definition, insights.kpis.RECOVERY_DUE)
    assert (total["cases"], total["recovered"], total["recovery_due"]) == (2, 1, 1)
    assert total["recovery_rate"] == 100.0
    assert total["opted_out"] == 1 and written.report.opt_outs == {"sms": 1}
    text = written.path.read_text()
    assert (
        "Care planned 2026-03-01 to 2026-03-01 (Asia/Shanghai); cases opened and opt-outs of "
        "every date; replies collected up to 2026-03-01 10:04." in text
    )
    assert "- sms: 1" in text
    with (settings.reports_dir / "store_lists" / "ST1.csv").open(encoding="utf-8-sig") as handle:
        st1 = list(csv.DictReader(handle))
    assert [(r["section"], r["subscriber_id"]) for r in st1] == [("closed", "S1")]
    assert st1[0]["second_round_score"] == "5"  # named for what it is, beside its channel
    with (settings.reports_dir / "store_lists" / "ST2.csv").open(encoding="utf-8-sig") as handle:
        (st2,) = list(csv.DictReader(handle))
    # opened when the rating came in (02:03 UTC): New York's time, to the minute
    assert (st2["section"], st2["opened_local"], st2["store_timezone"]) == (
        "to do",
        "2026-02-28 21:03",
        "America/New_York",
    )


def test_a_periods_reply_line_names_the_newest_reply_collected_not_only_within_it(con, settings):
    """Care planned on the period's last day is rated the day after: the care figures count
    that rating, so the period line says replies were collected up to it, not up to the
    newest reply within the period (there is none); replies by attribution count those that
    came in the period."""
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=T0)
    rated_at = T0 + timedelta(days=1, hours=3)  # 2026-03-02 13:00 in Shanghai
    Inbox(settings.inbox_path).put(
        "sms",
        "SM1",
        rated_at,
        {"MessageSid": "SM1", "From": "+8613800000001", "To": "+10000000000", "Body": "4"},
    )
    collect(con, Inbox(settings.inbox_path), reply_window=timedelta(hours=72), now=rated_at)
    # a second round planned later in the period: the care figures (first round) end on the 1st
    add_action(con, "A2", "S1", round=2, sent_at=T0 + timedelta(days=2))
    day = date(2026, 3, 1)
    report = loop_report(con, ZONE, day, day + timedelta(days=3))
    assert report.totals()["rated"] == 1 and report.replies == {"matched": 1}
    said = report.period.describe()
    assert said.startswith("Care planned 2026-03-01 to 2026-03-01 (Asia/Shanghai)")
    assert said.endswith("replies collected up to 2026-03-02 13:00."), said
    first_day = loop_report(con, ZONE, day, day)
    assert first_day.replies == {}  # the rating came the next day
    assert first_day.period.describe().endswith("replies collected up to 2026-03-02 13:00.")
    # no first-round care in the days after, but what their cases count is bounded alike
    after = loop_report(con, ZONE, day + timedelta(days=1), day + timedelta(days=3))
    assert after.period.describe() == (
        "No first-round care planned in this period (Asia/Shanghai); cases opened and "
        "opt-outs from "
        "2026-03-02 to 2026-03-04; replies collected up to 2026-03-02 13:00."
    )


def _one_complaint_collected(con, settings):
    """S1's survey, sent at T0, rated 1 by SMS a minute later, and collected."""
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=T0)
    inbox = Inbox(settings.inbox_path)
    reply = {"MessageSid": "SM1", "From": "+8613800000001", "To": "+10000000000", "Body": "1"}
    inbox.put("sms", "SM1", T0 + timedelta(minutes=1), reply)
    collect(con, inbox, reply_window=timedelta(hours=72))


def test_a_store_list_names_each_cases_second_round_as_the_outbox_has_it(con, settings):
    _one_complaint_collected(con, settings)
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0 + timedelta(1))
    [(action_id, channel)] = con.execute(
        "SELECT action_id, channel FROM care_actions WHERE round = 2"
    ).fetchall()
    con.execute("UPDATE care_actions SET status = 'delivered' WHERE action_id = ?", [action_id])
    write_store_lists(con, settings.reports_dir / "store_lists", T0 + timedelta(2))
    with (settings.reports_dir / "store_lists" / "ST1.csv").open(encoding="utf-8-sig") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["subscriber_id"], row["second_round_channel"]) == ("S1", channel)
    assert row["second_round_status"] == "delivered"


def test_a_plan_is_dated_by_the_projects_clock_not_the_wall_clock(con, settings, monkeypatch):
    """A second round made without an explicit moment (the flow's default) is dated by
    ``core.clock``: the clock tests inject and the year benchmark shifts. Dated by the wall
    clock, its care fell outside every window that looks for recent care by creation time."""
    import campaigns.planning

    _one_complaint_collected(con, settings)
    planned_at = T0 + timedelta(hours=3)
    monkeypatch.setattr(campaigns.planning, "utc_now", lambda: planned_at)
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2")
    rows = con.execute("SELECT DISTINCT created_at FROM care_actions WHERE round = 2").fetchall()
    assert rows == [(planned_at,)]


def test_a_second_round_keeps_its_due_time_and_learns_no_send_hours(con, settings):
    """Every member of a second round has a due time (the rating plus the rule's delay), so
    a campaign that learns send hours learns none for it: the year's history is not read."""
    _one_complaint_collected(con, settings)
    campaign = load_campaigns(settings)["birthday"]
    assert campaign.campaign.learns_send_time
    plan = plan_second_round(
        con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0 + timedelta(hours=3)
    )
    assert plan.figures["send_time"] == {"learned": 0, "fallback": 0}
    assert con.execute("SELECT count(*) FROM send_hour_days_stored").fetchone() == (0,)
    sources = con.execute("SELECT send_time_source FROM care_actions WHERE round = 2").fetchall()
    assert sources == [(None,)]


def test_a_case_names_its_second_round_made_by_a_clock_behind_its_rating(con, settings):
    """A second round whose moment was read before a rating came in (it waited for the
    warehouse while collect stored that rating) still gives the case its care: before, the
    case looked for care made after the rating only, and kept no second round for good."""
    _one_complaint_collected(con, settings)  # rated at T0 + 1 minute
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0)
    [(care,)] = con.execute("SELECT action_id FROM care_actions WHERE round = 2").fetchall()
    cases = con.execute("SELECT second_round_action_id FROM manager_cases").fetchall()
    assert cases == [(care,)]


def test_a_second_round_given_a_moment_without_a_timezone_reads_it_as_utc(con, settings):
    """A flow's ``now`` may come without a timezone (a deployment's parameter): the plan and
    its case read it as UTC, as the warehouse does, and the case names its care."""
    _one_complaint_collected(con, settings)
    campaign = load_campaigns(settings)["birthday"]
    naive = (T0 + timedelta(hours=3)).replace(tzinfo=None)
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=naive)
    [(care,)] = con.execute("SELECT action_id FROM care_actions WHERE round = 2").fetchall()
    cases = con.execute("SELECT second_round_action_id FROM manager_cases").fetchall()
    assert cases == [(care,)]


KILLED_BETWEEN_CARE_AND_CASE = """
import os, signal, sys
from datetime import date, datetime
import cases.second_round
from campaigns.catalog import load_campaigns
from core.settings import load_settings
from warehouse.db import connect

def killed(con, made_at):  # the process dies once the care is written, before its case
    os.kill(os.getpid(), signal.SIGKILL)

cases.second_round.open_cases = killed
settings = load_settings()
campaign = load_campaigns(settings)["birthday"]
cases.second_round.plan_second_round(
    connect(settings.warehouse_path), settings, campaign, date(2026, 3, 1), "killed",
    created_at=datetime.fromisoformat(sys.argv[1]),
)
"""


def test_a_second_round_killed_before_its_case_leaves_nothing_and_a_rerun_opens_it(con, settings):
    """SIGKILL after the second round's care is written and before its case is opened: the
    care goes with the case (one transaction), so the rerun plans the care and opens the
    case. Before, the care stayed without a case for good: the rule targets no survey that
    has had its second round."""
    _one_complaint_collected(con, settings)
    con.close()
    planned_at = T0 + timedelta(hours=3)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_CARE_AND_CASE, planned_at.isoformat()],
        env={**os.environ, "CARELOOP_HOME": str(settings.home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    with connect(settings.warehouse_path) as again:
        assert again.execute("SELECT count(*) FROM care_actions WHERE round = 2").fetchone() == (0,)
        campaign = load_campaigns(settings)["birthday"]
        plan_second_round(
            again, settings, campaign, date(2026, 3, 1), "rerun", created_at=planned_at
        )
        [(care,)] = again.execute("SELECT action_id FROM care_actions WHERE round = 2").fetchall()
        cases = again.execute("SELECT second_round_action_id FROM manager_cases").fetchall()
    assert cases == [(care,)]


class _Told:
    def __init__(self):
        self.steps = []

    def step(self, name, figures):
        self.steps.append(name)

    def track(self, label, total):
        return contextlib.nullcontext(lambda amount: None)

    def note(self, message):
        pass


def test_a_second_round_that_fails_tells_no_step_done_and_a_kept_one_tells_each(
    con, settings, monkeypatch
):
    """Its steps are stored in one transaction: a failure rolls them all back, so none of
    them may have been shown as done (queued care that was never kept)."""
    import cases.second_round

    _one_complaint_collected(con, settings)
    campaign = load_campaigns(settings)["birthday"]
    told = _Told()

    def unavailable(con, made_at):
        raise RuntimeError("case table unavailable")

    with monkeypatch.context() as patched, reporting(told):
        patched.setattr(cases.second_round, "open_cases", unavailable)
        with pytest.raises(RuntimeError, match="case table unavailable"):
            plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0)
    assert told.steps == []
    assert con.execute("SELECT count(*) FROM care_actions WHERE round = 2").fetchone() == (0,)
    with reporting(told):
        plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=T0)
    assert told.steps == [
        *(f"birthday round 2 {step.name}" for step in STEPS),
        "birthday round 2 cases",
    ]
