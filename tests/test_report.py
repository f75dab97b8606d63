"""careloop report on any warehouse: empty, part of a loop, campaigns with no ratings yet."""

from datetime import UTC, datetime

from feedback.report import loop_report, summary_rows, write_reports
from tests.factories import add_action, add_store, add_subscriber


def test_the_report_works_on_an_empty_warehouse_and_a_campaign_with_no_ratings(con, settings):
    empty = write_reports(con, settings.reports_dir, "empty")
    assert "| **all** | 0 | 0 | 0 | 0 (0/0/0) |" in empty.path.read_text()
    assert dict(summary_rows(loop_report(con)))["CSAT (% of ratings 4-5)"] is None
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=datetime.now(UTC))
    report = loop_report(con)
    assert report.totals()["csat"] is None and report.totals()["sent"] == 1
    write_reports(con, settings.reports_dir, "no ratings yet")
