"""Contact data stays private: masked in logs and refusals, lists owner-only and safe to open
in a spreadsheet (issue 8)."""

import csv
import logging
import stat
from datetime import UTC, datetime

import pytest

from campaigns.content import ordinal
from core.files import spreadsheet_safe
from core.masking import MaskingFilter, install_masking
from insights.report import write_reports
from tests.factories import add_listed_case, add_store
from warehouse.loading import LoadRefusedError, load_file

EVIL = '=HYPERLINK("http://evil.example/x","详情")'  # the comment of the reply "1 =HYPERLINK..."


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        (EVIL, "'" + EVIL),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("=1+1", "'=1+1"),
        ("+8613812345678", "+8613812345678"),  # a phone is a plain number: kept
        ("-5", "-5"),
        ("排队太久了", "排队太久了"),
        (3, 3),
    ],
)
def test_cells_that_would_run_as_formulas_are_neutralised(cell, safe):
    assert spreadsheet_safe(cell) == safe


def test_store_lists_are_safe_to_open_and_owner_only(con, settings):
    add_listed_case(con, EVIL, datetime.now(UTC))
    written = write_reports(con, settings.reports_dir, "t", "Asia/Shanghai")
    [store_list] = (settings.reports_dir / "store_lists").glob("*.csv")
    with store_list.open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["comment"] == "'" + EVIL
    assert rows[0]["phone"] == "+8613800000001"
    for path in (store_list, written.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(store_list.parent.stat().st_mode) == 0o700


def test_refused_rows_never_show_contact_data(con, settings, tmp_path):
    add_store(con)
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "subscriber_id,name,phone,email,birthday,joined_on,tier,home_store_id,timezone,locale,"
        "sms_consent,email_consent,voice_consent\n"
        "S1,Li,+861381234,li.wei@nowhere,1990-01-01,2015-01-01,gold,ST1,Asia/Shanghai,zh-CN,"
        "true,true,true\n",
        encoding="utf-8",
    )
    with pytest.raises(LoadRefusedError) as refused:
        load_file(con, settings, "subscribers", path)
    text = (
        str(refused.value)
        + str(con.execute("SELECT report FROM load_reports").fetchall())
        + "".join(p.read_text() for p in (settings.reports_dir / "validation").glob("*.json"))
    )
    assert "+861381234" not in text and "li.wei@nowhere" not in text
    assert "+8*****1234" in str(refused.value) or "phone '" in str(refused.value)
    load_file(con, settings, "subscribers", path, quarantine=True)
    (record,) = con.execute("SELECT record->>'phone' FROM quarantine").fetchone()
    assert record == "+861381234"  # the original is kept where it belongs


def test_prefects_api_log_handlers_mask_too(prefect_harness):
    from prefect import flow, get_run_logger

    @flow
    def logs_a_phone():
        get_run_logger().warning("calling +8613812345678 at li.wei@example.com")

    logs_a_phone()  # Prefect sets up its run loggers and API handler by now
    install_masking()
    handlers = [
        h
        for name in ("prefect.flow_runs", "prefect.task_runs")
        for h in logging.getLogger(name).handlers
    ]
    assert handlers and all(any(isinstance(f, MaskingFilter) for f in h.filters) for h in handlers)
    record = logging.LogRecord("prefect.flow_runs", 30, "x", 1, "to +8613812345678", None, None)
    assert all(f.filter(record) for f in handlers[0].filters)
    assert record.getMessage() == "to +86*******5678"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (101, "101st"),
        (111, "111th"),
    ],
)
def test_english_ordinals(n, text):
    assert ordinal(n) == text
