"""Escalation past the SLA, once; each manager's morning mail with safe CSV and XLSX lists."""

import csv
import io
import zipfile
from datetime import date, timedelta

from campaigns.channels.mail import SandboxMailer
from feedback.cases import escalate_overdue
from feedback.digest import send_digests
from tests.manager_world import OPENED, build

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
    events = con.execute("SELECT to_status, note FROM case_events ORDER BY 1, 2").fetchall()
    assert events == [
        ("escalated", "no regional contact to tell"),
        ("escalated", "told 陈经理 (e***@example.com)"),
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
    rows = list(csv.reader(io.StringIO(files["ST1-2026-03-02.csv"].content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["section", "customer", "phone"] and len(rows) == 4
    comments = [row[7] for row in rows[1:]]
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
