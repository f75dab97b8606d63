"""Escalation past the SLA, once; each manager's morning mail with safe CSV and XLSX lists."""

import csv
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest

from campaigns.catalog import load_campaigns
from campaigns.channels.factory import get_mailer
from campaigns.channels.mail import SandboxMailer
from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from cases.collect import collect
from cases.digest import send_digests
from cases.escalation import escalate_overdue
from cases.follow_up import plan_follow_ups
from inbox.inbox import Inbox
from tests.factories import add_action, add_store, add_subscriber
from tests.fakes import Fault, processed_event
from tests.manager_world import OPENED, add_case, build

REGIONS = [("East China", "陈经理", "east@example.com")]


def world(con, settings):
    build(con, settings)
    con.executemany("INSERT INTO regions VALUES (?, ?, ?)", REGIONS)
    con.execute("UPDATE stores SET region = 'US East' WHERE store_id = 'ST2'")  # no contact
    return SandboxMailer(settings.sandbox_path)


def test_an_overdue_case_escalates_exactly_once(con, settings):
    mailer = world(con, settings)
    con.execute("UPDATE manager_cases SET contacted_at = ? WHERE evaluation_id = 'E2'", [OPENED])
    early = OPENED + timedelta(hours=47)
    assert escalate_overdue(con, mailer, early, 48)["escalated"] == 0
    late = OPENED + timedelta(hours=49)
    figures = escalate_overdue(con, mailer, late, 48)
    # E1 (ST1, East China) by mail; E9 (ST2, a region without a contact) marked, no mail;
    # E2 was contacted in time, E3 recovered
    assert figures == {"escalated": 2, "mails": 1, "without_contact": 1, "mail_failed": 0}
    (mail,) = mailer.sent()
    assert mail.to == "east@example.com" and "1 overdue case" in mail.subject
    assert "客户1" in mail.text and "排队太久了" in mail.text
    assert escalate_overdue(con, mailer, late + timedelta(hours=5), 48)["escalated"] == 0
    assert len(mailer.sent()) == 1
    marked = con.execute(
        "SELECT evaluation_id FROM manager_cases WHERE escalated_at IS NOT NULL ORDER BY 1"
    ).fetchall()
    assert marked == [("E1",), ("E9",)]
    # escalation marks a case and leaves its state: still the manager's to call
    events = con.execute(
        "SELECT from_status, to_status, note FROM case_events ORDER BY 3"
    ).fetchall()
    assert events == [
        ("open", "open", "escalated: no regional contact to tell"),
        ("open", "open", "escalated: told 陈经理 (e***@example.com)"),
    ]


def test_each_manager_gets_one_morning_list_with_safe_attachments(con, settings):
    mailer = world(con, settings)
    evil = '=HYPERLINK("http://evil")'
    con.execute("UPDATE manager_cases SET comment = ? WHERE evaluation_id = 'E2'", [evil])
    now = OPENED + timedelta(hours=30)  # E1 and E2 are due within a day
    sent = send_digests(con, mailer, settings, now, date(2026, 3, 2))
    assert {s["store"]: (s["open"], s["due"], s["cases"]) for s in sent} == {
        "ST1": (2, 2, 3), "ST2": (1, 1, 1)
    }  # fmt: skip
    mails = {m.key: m for m in mailer.sent()}
    st1 = mails["digest:ST1:2026-03-02"]
    assert "2 个待处理" in st1.subject and "/m/login/" in st1.text
    files = {f.name: f for f in st1.attachments}
    text = files["ST1-2026-03-02.csv"].content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and rows[0]["section"] == "to do" and rows[-1]["section"] == "closed"
    comments = [row["comment"] for row in rows]
    assert "'" + evil in comments  # neutralised: a spreadsheet shows it as text
    sheet = (
        zipfile.ZipFile(io.BytesIO(files["ST1-2026-03-02.xlsx"].content))
        .read("xl/worksheets/sheet1.xml")
        .decode()
    )
    assert "<f>" not in sheet  # no formula anywhere: every cell is a value
    strings = (
        zipfile.ZipFile(io.BytesIO(files["ST1-2026-03-02.xlsx"].content))
        .read("xl/sharedStrings.xml")
        .decode()
    )
    assert "HYPERLINK" in strings  # kept, as text
    again = send_digests(con, mailer, settings, now + timedelta(hours=1), date(2026, 3, 2))
    assert again == [] and len(mailer.sent()) == 2  # once per store per day


def test_the_mailed_list_and_the_reports_store_list_are_one_list(con, settings):
    """They had different columns (the mail's "opened (store time)" and "escalated", the
    report's opened_local, store_timezone and the second round's score) and orders."""
    from insights.report import write_store_lists

    mailer = world(con, settings)
    con.execute("UPDATE manager_cases SET contacted_at = ? WHERE evaluation_id = 'E2'", [OPENED])
    now = OPENED + timedelta(hours=49)
    escalate_overdue(con, mailer, now, 48)  # E1 escalated: first on its list
    send_digests(con, mailer, settings, now, date(2026, 3, 2))
    mails = {m.key: m for m in mailer.sent()}
    write_store_lists(con, settings.reports_dir / "store_lists", now)
    for store in ("ST1", "ST2"):
        (attached,) = [f for f in mails[f"digest:{store}:2026-03-02"].attachments
                       if f.name.endswith(".csv")]  # fmt: skip
        listed = (settings.reports_dir / "store_lists" / f"{store}.csv").read_bytes()
        assert attached.content == listed, store  # nothing closed more than a week ago
    with (settings.reports_dir / "store_lists" / "ST1.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [(r["section"], bool(r["escalated_local"])) for r in rows] == [
        ("to do", True), ("to do", False), ("closed", False)
    ]  # fmt: skip


def test_every_store_has_its_list_file_its_header_alone_when_nothing_is_listed(con, settings):
    """A store with nothing listed had no file, and a re-run deleted the one an earlier
    report had written for it: its manager found an old list or none."""
    from insights.report import write_store_lists

    world(con, settings)
    add_store(con, store_id="ST9", name="空店")
    folder = settings.reports_dir / "store_lists"
    now = OPENED + timedelta(hours=1)
    rows = write_store_lists(con, folder, now)
    assert rows["ST9"] == 0 and rows["ST1"] > 0
    listed = (folder / "ST1.csv").read_bytes().split(b"\r\n")[0]
    assert (folder / "ST9.csv").read_bytes() == listed + b"\r\n"  # the same header, alone
    con.execute("DELETE FROM manager_cases WHERE store_id = 'ST1'")
    assert write_store_lists(con, folder, now)["ST1"] == 0
    assert (folder / "ST1.csv").read_bytes() == listed + b"\r\n"  # the old list is gone
    # a store whose id an older version let in, with nothing listed: no file, and no stop
    add_store(con, store_id="上海 新店", name="新店")
    assert "上海 新店" not in write_store_lists(con, folder, now)


def _resolve(con, case_id, at):
    con.execute(
        "UPDATE manager_cases SET status = 'resolved', closed_at = ? WHERE evaluation_id = ?",
        [at, case_id],
    )


def _answer(con, settings, case_id, body, at):
    """The customer answers the follow-up survey by SMS, as the service would land it."""
    action, phone = con.execute(
        "SELECT action_id, recipient FROM care_actions WHERE parent_evaluation_id = ? "
        "AND round = 3 ORDER BY created_at DESC LIMIT 1",
        [case_id],
    ).fetchone()
    con.execute(
        "UPDATE care_actions SET status = 'sent', sent_at = ?, sender = '+10000000000' "
        "WHERE action_id = ?",
        [at, action],
    )
    sid = f"SM{abs(hash((case_id, body, at))):032x}"[:34]
    Inbox(settings.inbox_path).put(
        "sms", sid, at + timedelta(minutes=5),
        {"MessageSid": sid, "From": phone, "To": "+10000000000", "Body": body},
    )  # fmt: skip
    collect(con, Inbox(settings.inbox_path), reply_window=timedelta(hours=72))


def test_a_follow_up_cut_off_before_its_case_is_marked_asked_is_not_queued(
    con, settings, monkeypatch
):
    """Queued and marked asked together: cut between the two, the next day's run would have
    asked again under the next day's action id."""
    import cases.follow_up

    world(con, settings)
    now = OPENED + timedelta(hours=3)
    _resolve(con, "E1", now)
    monkeypatch.setattr(cases.follow_up, "ASKED_SQL", "SELECT error('cut off' || $now)")
    with pytest.raises(duckdb.Error, match="cut off"):
        plan_follow_ups(con, settings, now)
    monkeypatch.undo()
    assert con.execute("SELECT count(*) FROM care_actions WHERE round = 3").fetchone() == (0,)
    assert plan_follow_ups(con, settings, now + timedelta(days=1)) == 1
    assert plan_follow_ups(con, settings, now + timedelta(days=2)) == 0
    assert con.execute("SELECT count(*) FROM care_actions WHERE round = 3").fetchone() == (1,)


def test_a_case_with_no_channel_to_ask_on_is_left_and_the_others_are_asked(con, settings):
    """E2's survey and its rating are gone (a case made by hand, a deleted history): no
    channel is known for it, so it is left, and E1 is still asked."""
    world(con, settings)
    now = OPENED + timedelta(hours=3)
    _resolve(con, "E1", now)
    _resolve(con, "E2", now)
    con.execute("DELETE FROM care_actions WHERE action_id = 'A-E2'")
    con.execute("DELETE FROM latest_ratings WHERE action_id = 'A-E2'")
    assert plan_follow_ups(con, settings, now) == 1
    asked = con.execute("SELECT parent_evaluation_id FROM care_actions WHERE round = 3")
    assert asked.fetchall() == [("E1",)]


def test_a_resolved_case_asks_again_and_the_answer_closes_or_reopens_it(con, settings):
    world(con, settings)
    now = OPENED + timedelta(hours=3)
    _resolve(con, "E1", now)
    _resolve(con, "E2", now)
    assert plan_follow_ups(con, settings, now) == 2
    assert plan_follow_ups(con, settings, now) == 0  # asked once per resolution
    body = con.execute(
        "SELECT body FROM care_actions WHERE round = 3 AND parent_evaluation_id = 'E1'"
    ).fetchone()[0]
    assert "现在问题解决了吗" in body and "回复1-5" in body and "回复TD退订" in body
    _answer(con, settings, "E1", "5", now + timedelta(hours=1))
    _answer(con, settings, "E2", "1 还是没解决", now + timedelta(hours=1))
    status = dict(con.execute("SELECT evaluation_id, status FROM manager_cases").fetchall())
    assert status["E1"] == "recovered" and status["E2"] == "open"  # reopened
    # the reopened case is the manager's again; no second round for it (never twice)
    assert con.execute("SELECT count(*) FROM care_actions WHERE round = 2").fetchone()[0] == 0
    # resolved again and asked again, up to the cap (2), then no more
    _resolve(con, "E2", now + timedelta(hours=5))
    assert plan_follow_ups(con, settings, now + timedelta(hours=5)) == 1
    _answer(con, settings, "E2", "2", now + timedelta(hours=6))
    _resolve(con, "E2", now + timedelta(hours=7))
    assert plan_follow_ups(con, settings, now + timedelta(hours=7)) == 0


def test_an_opted_out_customer_is_not_asked_and_the_history_says_why(con, settings):
    world(con, settings)
    con.execute(
        "INSERT INTO opt_outs VALUES ('S1', 'sms', 'opt_out', ?, 'sms_reply', 'x1')", [OPENED]
    )
    _resolve(con, "E1", OPENED + timedelta(hours=1))
    assert plan_follow_ups(con, settings, OPENED + timedelta(hours=1)) == 0
    note = con.execute("SELECT note FROM case_events WHERE evaluation_id = 'E1'").fetchone()[0]
    assert note == "not asked again: opted out of sms"


def test_a_second_round_with_no_answer_in_its_window_leaves_the_case_unresolved(con, settings):
    world(con, settings)
    add_action(con, "R2", "S1", round=2, recipient="+8613800000001", sent_at=OPENED)
    add_action(con, "R2b", "S2", round=2, recipient="+8613800000002", sent_at=OPENED)
    con.execute("UPDATE manager_cases SET second_round_action_id = 'R2' WHERE evaluation_id = 'E1'")
    con.execute(
        "UPDATE manager_cases SET second_round_action_id = 'R2b', status = 'contacted' "
        "WHERE evaluation_id = 'E2'"
    )
    inbox = Inbox(settings.inbox_path)
    window = timedelta(hours=72)
    collect(con, inbox, reply_window=window, now=OPENED + timedelta(hours=71))
    assert con.execute(
        "SELECT status FROM manager_cases WHERE evaluation_id = 'E1'"
    ).fetchone() == ("open",)
    collect(con, inbox, reply_window=window, now=OPENED + timedelta(hours=73))
    status = dict(con.execute("SELECT evaluation_id, status FROM manager_cases").fetchall())
    assert status["E1"] == "unresolved"  # the manager still has it, marked so
    assert status["E2"] == "contacted"  # being worked: left as it is
    note = con.execute("SELECT note FROM case_events WHERE evaluation_id = 'E1'").fetchone()[0]
    assert note == "no answer to the second round"


# Staff mail exactly once ------------------------------------------------------------------


def mail_keys(sendgrid):
    """The key each mail SendGrid took carries back in its events."""
    return [
        r.body["custom_args"]["action_id"] for r in sendgrid.state.requests if r.method == "POST"
    ]


class KilledAfterSending:
    """The mailer of a run killed right after the mail left, before the warehouse recorded it."""

    def __init__(self, mailer):
        self.mailer, self.remote = mailer, mailer.remote

    def send(self, mail, at):
        self.mailer.send(mail, at)
        raise KeyboardInterrupt  # what a kill leaves: the mail is out, nothing more happens

    def settle(self, claims, now):
        return self.mailer.settle(claims, now)


def live_world(con, settings, fakes, events=True):
    _, sendgrid, live_settings = fakes
    world(con, settings)
    inbox = Inbox(live_settings.inbox_path)
    if events:  # SendGrid's Event Webhook lands its events in the inbox, as the service does
        sendgrid.state.event_sink = lambda batch: inbox.put_many(
            ("status", e["sg_event_id"], datetime.now(UTC), e) for e in batch
        )
    return sendgrid, get_mailer(live_settings)


def test_a_digest_killed_between_send_and_record_is_not_mailed_again(con, settings, fakes):
    sendgrid, mailer = live_world(con, settings, fakes)
    now, day = OPENED + timedelta(hours=30), date(2026, 3, 2)
    with pytest.raises(KeyboardInterrupt):
        send_digests(con, KilledAfterSending(mailer), settings, now, day)
    assert len(sendgrid.state.messages) == 1  # the first store's list went
    rerun = send_digests(con, mailer, settings, now + timedelta(minutes=5), day)
    assert [r["store"] for r in rerun] == ["ST2"]  # only the one that never went
    assert sorted(mail_keys(sendgrid)) == [
        "staff:digest:ST1:2026-03-02", "staff:digest:ST2:2026-03-02"
    ]  # fmt: skip
    log = con.execute("SELECT status, count(*) FROM staff_mail_log GROUP BY ALL").fetchall()
    assert log == [("sent", 2)]


def test_an_escalation_of_unknown_fate_waits_and_is_never_sent_twice(con, settings, fakes):
    sendgrid, mailer = live_world(con, settings, fakes, events=False)
    late = OPENED + timedelta(hours=49)
    with pytest.raises(KeyboardInterrupt):
        escalate_overdue(con, KilledAfterSending(mailer), late, 48)
    assert len(sendgrid.state.messages) == 1
    # No event yet, and nothing shows the event stream flows: not known, so nothing goes again
    # and the case is in no other mail meanwhile.
    waiting = escalate_overdue(con, mailer, late + timedelta(minutes=20), 48)
    assert waiting["mails"] == 0 and len(sendgrid.state.messages) == 1
    escalated = "SELECT evaluation_id FROM manager_cases WHERE escalated_at IS NOT NULL ORDER BY 1"
    assert con.execute(escalated).fetchall() == [("E9",)]  # ST2's region has no contact
    # The processed event arrives: the mail went, so its cases are marked, still one mail.
    [request] = [r for r in sendgrid.state.requests if r.method == "POST"]
    event = processed_event({**request.body["personalizations"][0],
                             "custom_args": request.body["custom_args"]}, "m1")  # fmt: skip
    Inbox(settings.inbox_path).put("status", event["sg_event_id"], late, event)
    settled = escalate_overdue(con, mailer, late + timedelta(minutes=30), 48)
    assert settled["escalated"] == 2 and settled["mails"] == 0
    assert len(sendgrid.state.messages) == 1
    assert con.execute(escalated).fetchall() == [("E1",), ("E2",), ("E9",)]
    notes = con.execute("SELECT note FROM case_events WHERE note LIKE 'escalated:%'").fetchall()
    assert ("escalated: told 陈经理 (e***@example.com)",) in notes


def test_a_mail_surely_refused_is_composed_again_by_the_next_run(con, settings, fakes):
    sendgrid, mailer = live_world(con, settings, fakes)
    sendgrid.state.faults.append(Fault(status=503))  # turned away unhandled
    late = OPENED + timedelta(hours=49)
    first = escalate_overdue(con, mailer, late, 48)
    assert first["mail_failed"] == 2 and not sendgrid.state.messages
    again = escalate_overdue(con, mailer, late + timedelta(minutes=10), 48)
    assert again["mails"] == 1 and len(sendgrid.state.messages) == 1


def test_a_500_after_sendgrid_took_the_digest_is_settled_by_its_event(con, settings, fakes):
    sendgrid, mailer = live_world(con, settings, fakes)
    sendgrid.state.faults.append(Fault(status=500, handled=True))
    now, day = OPENED + timedelta(hours=30), date(2026, 3, 2)
    first = send_digests(con, mailer, settings, now, day)
    assert [r["sent"] for r in first] == [False, True] and len(sendgrid.state.messages) == 2
    again = send_digests(con, mailer, settings, now + timedelta(minutes=5), day)
    assert again == [] and len(sendgrid.state.messages) == 2
    log = con.execute("SELECT status, count(*) FROM staff_mail_log GROUP BY ALL").fetchall()
    assert log == [("sent", 2)]


class Counting:
    """A connection that counts the statements it is given."""

    def __init__(self, con):
        self._con, self.statements = con, 0

    def execute(self, *args):
        self.statements += 1
        return self._con.execute(*args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_follow_ups_take_as_many_statements_for_many_cases_as_for_a_few(con, settings):
    """Set-based: the cases are read and written once a run, whatever their number."""
    world(con, settings)
    now = OPENED + timedelta(hours=3)
    runs = []
    for cases in (("E1", "E2"), tuple(f"E{n}" for n in range(20, 40))):
        for case_id in cases:
            if case_id not in ("E1", "E2"):
                subscriber = f"S{case_id[1:]}"
                add_subscriber(con, subscriber)
                add_case(con, case_id, "ST1", subscriber)
            _resolve(con, case_id, now)
        # one customer each time cannot be asked: opted out of SMS
        con.execute(
            "INSERT INTO opt_outs SELECT subscriber_id, 'sms', 'opt_out', ?, 'sms_reply', "
            "'x-' || evaluation_id FROM manager_cases WHERE evaluation_id = ?",
            [OPENED, cases[-1]],
        )
        counting = Counting(con)
        queued = plan_follow_ups(counting, settings, now)
        assert queued == len(cases) - 1
        runs.append(counting.statements)
    assert runs[0] == runs[1], runs
    given_up = con.execute(
        "SELECT evaluation_id FROM case_events WHERE note = 'not asked again: opted out of sms'"
    ).fetchall()
    assert sorted(given_up) == [("E2",), ("E39",)]


def test_a_follow_up_keeps_its_campaigns_window_and_leaves_in_a_simulated_day(con, settings):
    """The demo queues follow-ups at the end of its day, 00:00 UTC (08:00 in Shanghai, before
    the window): the next simulated dispatch sends them at the window's opening, and nothing
    stays queued past its expiry."""
    world(con, settings)
    midnight = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    _resolve(con, "E1", midnight - timedelta(hours=1))
    assert plan_follow_ups(con, settings, midnight) == 1
    window = load_campaigns(settings)["store_visit"].campaign.send_window
    row = con.execute(
        "SELECT window_start, window_end, expires_at, scheduled_at FROM care_actions "
        "WHERE round = 3"
    ).fetchone()
    assert row[:3] == (window[0], window[1], midnight + timedelta(days=3))
    day_end = midnight + timedelta(days=1)
    figures = dispatch(con, SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path)),
                       now=day_end, simulated=True)  # fmt: skip
    sent = con.execute("SELECT status, sent_at FROM care_actions WHERE round = 3").fetchone()
    opening = datetime.combine(date(2026, 3, 3), window[0], ZoneInfo("Asia/Shanghai"))
    assert figures.sent == {"sms": 1} and sent == ("sent", opening.astimezone(UTC))


@pytest.mark.usefixtures("prefect_harness")
def test_a_managers_call_still_in_the_inbox_holds_its_case_back_from_escalation(con, settings):
    """A collect waits for a dispatch's whole run, so a manager's 'contacted' can sit in the
    inbox past the SLA: the escalation flow mailed the region that the customer waited
    without a call, and the collect after marked the case contacted two days before. The
    case waits for the next run; the others go as before."""
    from flows.manager_cases import escalate_cases

    mailer = world(con, settings)
    con.execute("UPDATE manager_cases SET contacted_at = ? WHERE evaluation_id = 'E2'", [OPENED])
    inbox = Inbox(settings.inbox_path)
    called = OPENED + timedelta(hours=40)  # within the SLA, not collected yet
    change = {"case_id": "E1", "store_id": "ST1", "action": "contacted", "note": "called",
              "at": called.isoformat()}  # fmt: skip
    inbox.put("case_event", f"E1:contacted:{called.isoformat()}", called, change)
    con.close()  # the flow opens the warehouse itself
    late = OPENED + timedelta(hours=49)
    figures = escalate_cases(home=str(settings.home), now=late)
    assert figures["escalated"] == 1  # E9 only
    assert mailer.sent() == []  # E1 was the only case of a region with a contact
    assert figures.get("calls_not_collected") == 1
    from warehouse.db import connect

    con = connect(settings.warehouse_path)
    collect(con, inbox, reply_window=timedelta(hours=72))
    con.close()
    after = escalate_cases(home=str(settings.home), now=late + timedelta(minutes=5))
    assert after["escalated"] == 0 and mailer.sent() == []
    con = connect(settings.warehouse_path)
    assert con.execute(
        "SELECT contacted_at IS NOT NULL, escalated_at IS NULL FROM manager_cases "
        "WHERE evaluation_id = 'E1'"
    ).fetchone() == (True, True)
    con.close()


@pytest.mark.usefixtures("prefect_harness")
def test_a_call_made_after_the_sla_holds_no_escalation_back(con, settings):
    from flows.manager_cases import escalate_cases

    mailer = world(con, settings)
    con.execute("UPDATE manager_cases SET contacted_at = ? WHERE evaluation_id = 'E2'", [OPENED])
    con.close()
    late_call = OPENED + timedelta(hours=48, minutes=30)
    change = {"case_id": "E1", "store_id": "ST1", "action": "contacted", "note": "called",
              "at": late_call.isoformat()}  # fmt: skip
    Inbox(settings.inbox_path).put("case_event", f"E1:contacted:{late_call}", late_call, change)
    figures = escalate_cases(home=str(settings.home), now=OPENED + timedelta(hours=49))
    assert figures["escalated"] == 2 and len(mailer.sent()) == 1  # E1 told, E9 marked
