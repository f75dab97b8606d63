"""One figure, one definition: the console's figures, the loop report's sections, the monthly
report, the store lists and the managers' page give the same number for the same period."""

import csv
from datetime import UTC, date, datetime, timedelta

import polars as pl

from cases.machine import ACTIVE
from cases.publishing import CLOSED_SHOWN_DAYS, board_rows
from insights.kpis import kpi_moments
from insights.panorama import kpi_rows
from insights.report import NO_MESSAGE, loop_report, summary_rows, write_reports
from insights.targets import Targets
from tests.factories import add_action, add_opt_out, add_store, add_subscriber

ZONE = "Asia/Shanghai"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
NOW = datetime(2026, 3, 20, 2, 0, tzinfo=UTC)


def add_evaluation(con, key, action_id, subscriber, *, intent, round=1, at, score=None):
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
            campaign_id, round, store_id, channel, intent, score, attribution, received_at)
        SELECT ?, ?, action_id, ?, campaign_id, ?, store_id, channel, ?, ?, 'matched', ?
        FROM care_actions WHERE action_id = ?""",
        [key, key, subscriber, round, intent, score, at, action_id],
    )


def add_case(con, case_id, subscriber, action_id, *, opened, status, contacted=None, closed=None):
    con.execute(
        """INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id,
            action_id, score, opened_at, status, contacted_at, closed_at, updated_at)
        VALUES (?, 'ST1', ?, 'birthday', ?, 1, ?, ?, ?, ?, coalesce(?, ?, ?))""",
        [case_id, subscriber, action_id, opened, status, contacted, closed, closed, contacted,
         opened],
    )  # fmt: skip


def test_opt_outs_are_one_count_in_the_campaign_table_by_channel_and_the_console(con, settings):
    """A TD to a survey, an unsubscribe link and a TD to a second round: three opt-outs, in
    every place the report shows them (the table once counted only replies to first rounds)."""
    add_store(con)
    for n in (1, 2, 3):
        add_subscriber(con, f"S{n}")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=T0)
    add_action(con, "A2", "S2", campaign="anniversary", channel="email", sent_at=T0)
    add_action(con, "A3", "S3", recipient="+8613800000003", sent_at=T0)
    add_action(con, "A3-r2", "S3", recipient="+8613800000003", sent_at=T0 + timedelta(1), round=2)
    add_evaluation(con, "e1", "A1", "S1", intent="opt_out", at=T0 + timedelta(minutes=5))
    add_opt_out(con, "S1", "sms", T0 + timedelta(minutes=5), "sms_reply", "e1")
    add_opt_out(con, "S2", "email", T0 + timedelta(hours=1), "email_unsubscribe", "u2")
    at = T0 + timedelta(days=1, minutes=5)
    add_evaluation(con, "e3", "A3-r2", "S3", intent="opt_out", round=2, at=at)
    add_opt_out(con, "S3", "sms", at, "sms_reply", "e3")

    written = write_reports(con, settings.reports_dir, "opt-outs", ZONE, date(2026, 3, 1), now=NOW)
    report = written.report
    by_campaign = {c["campaign_id"]: c["opted_out"] for c in report.campaigns}
    assert by_campaign == {"anniversary": 1, "birthday": 2}
    assert report.opt_outs == {"email": 1, "sms": 2}
    assert report.totals()["opted_out"] == 3
    assert dict(summary_rows(report))["opted out"] == 3
    text = written.path.read_text()
    assert text.count("\n- sms: 2") == 1 and "\n- email: 1" in text
    all_row = next(line for line in text.splitlines() if line.startswith("| **all** |"))
    assert all_row.rstrip(" |").rsplit("|", 1)[1].strip() == "3"


def test_an_opt_out_is_put_down_to_a_message_less_than_7_days_before_it(con, settings):
    """As the monthly opt-out rate counts it: the latest message on the channel, if the opt-out
    came less than 7 days after it; an older one (or another channel's) is not its cause."""
    add_store(con)
    for n in (1, 2, 3):
        add_subscriber(con, f"S{n}")
    add_action(con, "A1", "S1", sent_at=T0)
    add_action(con, "A1-old", "S1", campaign="anniversary", sent_at=T0 - timedelta(days=30))
    add_action(con, "A2", "S2", sent_at=T0)
    add_action(con, "A3", "S3", sent_at=T0, channel="email")
    add_opt_out(con, "S1", "sms", T0 + timedelta(days=7) - timedelta(seconds=1), "sms_reply", "o1")
    add_opt_out(con, "S2", "sms", T0 + timedelta(days=7), "sms_reply", "o2")
    add_opt_out(con, "S3", "sms", T0 + timedelta(hours=1), "provider", "o3")  # not its channel

    report = loop_report(con, ZONE, date(2026, 3, 1), date(2026, 3, 31), now=NOW)
    by_campaign = {c["campaign_id"]: c["opted_out"] for c in report.campaigns if c["opted_out"]}
    assert by_campaign == {"birthday": 1, NO_MESSAGE: 2}
    assert report.campaigns[-1]["campaign_id"] == NO_MESSAGE  # last, though '(' sorts first
    assert report.opt_outs == {"sms": 3} and report.totals()["opted_out"] == 3
    console = dict(summary_rows(report))
    assert console["opted out"] == 3 and not any(NO_MESSAGE in row for row in console)
    moments = kpi_moments(con, "2026-03", ZONE, sla_hours=48, now=NOW, reply_window_hours=72)
    march = (pl.col("scope") == "overall") & (pl.col("month") == "2026-03")
    opt_out_rate = moments.filter(march & (pl.col("kpi") == "opt_out_rate"))
    assert opt_out_rate["total"].to_list() == [1]  # A1 alone was followed within the 7 days


def test_sla_compliance_is_the_same_in_the_console_and_the_monthly_report(con, settings):
    """For March: a case opened on 1 March (care planned on 28 February) never contacted, and
    one opened on 5 March contacted within the hour. Both are March's cases in the monthly
    report; the console once counted only the second (care planned in March): 100% vs 50%."""
    add_store(con)
    add_subscriber(con, "S1")
    add_subscriber(con, "S2")
    planned = datetime(2026, 2, 28, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai, 28 February
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=planned)
    add_action(
        con, "A2", "S2", recipient="+8613800000002", sent_at=datetime(2026, 3, 5, tzinfo=UTC)
    )
    add_case(con, "c1", "S1", "A1", opened=planned + timedelta(hours=3), status="open")
    opened = datetime(2026, 3, 5, 1, tzinfo=UTC)
    add_case(
        con,
        "c2",
        "S2",
        "A2",
        opened=opened,
        status="contacted",
        contacted=opened + timedelta(hours=1),
    )

    console = loop_report(con, ZONE, date(2026, 3, 1), date(2026, 3, 31), now=NOW, sla_hours=48)
    moments = kpi_moments(con, "2026-03", ZONE, sla_hours=48, now=NOW, reply_window_hours=72)
    rows = {(r.kpi, r.scope): r for r in kpi_rows(moments, "2026-03", Targets())}
    monthly = rows[("sla_compliance", "overall")]
    assert monthly.value is not None and (monthly.n, monthly.value) == (2, 0.5)
    assert console.cases["opened"] == monthly.n
    assert console.cases["sla_compliance"] == round(100 * monthly.value, 1) == 50.0
    figures = dict(summary_rows(console))
    assert figures["cases contacted within the SLA (%)"] == 50.0
    assert figures["cases opened in the period"] == 2


def test_a_resolved_case_is_listed_as_closed_in_the_csv_as_on_the_page(con, settings):
    """The store's CSV lists the cases the page shows, each in the section its status puts it
    in: a case the manager resolved is closed, not "open" (the demo's list had 35 resolved
    cases under "open" while the page showed 1 to do)."""
    add_store(con)
    cases = {
        "c1": ("open", None, None),
        "c2": ("resolved", NOW - timedelta(days=1), NOW - timedelta(days=1)),
        "c3": ("recovered", NOW - timedelta(days=6), NOW - timedelta(days=5)),
        "c4": ("unresolved", NOW - timedelta(days=40), None),
        "c5": ("resolved", NOW - timedelta(days=60), NOW - timedelta(days=45)),  # long closed
    }
    for n, (case_id, (status, contacted, closed)) in enumerate(cases.items(), start=1):
        add_subscriber(con, f"S{n}")
        add_action(con, f"A{n}", f"S{n}", recipient=f"+86138{n:08d}", sent_at=NOW - timedelta(70))
        opened = NOW - timedelta(days=65 if case_id == "c5" else 10 - n)
        add_case(con, case_id, f"S{n}", f"A{n}", opened=opened, status=status,
                 contacted=contacted, closed=closed)  # fmt: skip

    written = write_reports(con, settings.reports_dir, "lists", ZONE, now=NOW)
    with (settings.reports_dir / "store_lists" / "ST1.csv").open(encoding="utf-8-sig") as handle:
        listed = [(r["subscriber_id"], r["section"], r["status"]) for r in csv.DictReader(handle)]
    assert listed == [
        ("S1", "to do", "open"),
        ("S4", "to do", "unresolved"),
        ("S2", "closed", "resolved"),
        ("S3", "closed", "recovered"),
    ]
    _, page = board_rows(con, NOW, 48, CLOSED_SHOWN_DAYS)
    on_page = {(c["case_id"], "to do" if c["status"] in ACTIVE else "closed") for c in page}
    assert on_page == {("c1", "to do"), ("c4", "to do"), ("c2", "closed"), ("c3", "closed")}
    assert written.store_rows == {"ST1": 4}
    assert written.report.cases["still_to_do"] == 2
    assert dict(summary_rows(written.report))["cases opened in the period still to do"] == 2
    text = written.path.read_text()
    assert "- still to do: 2" in text
    assert (
        "4 cases listed across 1 stores: every case still to do, and those closed in the " in text
    )


def test_recovery_is_the_same_figure_in_the_console_and_the_monthly_report(con, settings):
    """One case recovered, one whose second round went an hour ago and is still to be
    answered: that one's outcome is not due. The console counted it as not recovered (50%)
    where the monthly report did not (100%)."""
    add_store(con)
    for n in (1, 2):
        add_subscriber(con, f"S{n}")
        add_action(con, f"A{n}", f"S{n}", recipient=f"+861380000000{n}", sent_at=T0)
    add_case(con, "c1", "S1", "A1", opened=T0 + timedelta(hours=1), status="open")
    add_case(con, "c2", "S2", "A2", opened=T0 + timedelta(hours=1), status="recovered",
             closed=T0 + timedelta(days=1))  # fmt: skip
    add_action(con, "R1", "S1", round=2, recipient="+8613800000001",
               sent_at=NOW - timedelta(hours=1))  # fmt: skip
    con.execute("UPDATE manager_cases SET second_round_action_id = 'R1' WHERE evaluation_id = 'c1'")
    console = loop_report(con, ZONE, date(2026, 3, 1), date(2026, 3, 31), now=NOW)
    moments = kpi_moments(con, "2026-03", ZONE, sla_hours=48, now=NOW, reply_window_hours=72)
    rows = {(r.kpi, r.scope): r for r in kpi_rows(moments, "2026-03", Targets())}
    monthly = rows[("recovery_rate", "overall")]
    assert (monthly.n, monthly.value) == (1, 1.0)
    assert console.totals()["recovery_rate"] == 100 * monthly.value
