"""Whole flows under Prefect (one test harness per session), on the sandbox provider."""

import csv
import gc
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from campaigns.planning import Plan
from cases.machine import ACTIVE
from cases.publishing import CLOSED_SHOWN_DAYS, board_rows
from demo.data import HISTORY_RUN
from flows.care_loop import care_loop
from flows.common import end_of_day
from flows.demo import DEMO_START, demo_home_in, run_demo
from insights.report import loop_report, summary_rows
from tests.factories import add_store, add_subscriber
from warehouse.db import connect

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_care_loop_rerun_contacts_nobody_twice(settings):
    con = connect(settings.warehouse_path)
    add_store(con)
    for n in range(1, 4):
        add_subscriber(con, f"S{n}")
    con.close()
    first = care_loop("birthday", as_of=date(2026, 6, 15), send=False)
    second = care_loop("birthday", as_of=date(2026, 6, 15), send=False)
    assert first["targeted"] == 3 and second["already_planned"] == 3
    assert second["queued"] == {}
    con = connect(settings.warehouse_path)
    assert con.execute(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM care_actions"
    ).fetchone() == (3, 3)
    assert con.execute("SELECT count(*) FROM campaign_runs").fetchone() == (2,)
    con.close()


def test_a_care_loop_keeps_no_plan_alive_once_it_ends(settings):
    """Prefect keeps a task's parameters referenced until the process exits: step tasks
    given the plan kept it, and its warehouse connection, alive to the end (nanobind
    reported them leaked at every command's exit). The tasks get the run id instead."""
    con = connect(settings.warehouse_path)
    add_store(con)
    add_subscriber(con, "S1")
    con.close()
    care_loop("birthday", as_of=date(2026, 6, 15), send=False)
    with connect(settings.warehouse_path) as con:
        [(run_id,)] = con.execute("SELECT run_id FROM campaign_runs").fetchall()
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Plan) and o.run_id == run_id]
    assert alive == []


def test_unknown_campaign_is_named(settings):
    with pytest.raises(ValueError, match="unknown campaign 'bday'; known: birthday"):
        care_loop("bday", as_of=date(2026, 6, 15))


def test_the_whole_loop_closes(settings, tmp_path):
    from prefect.client.orchestration import get_client

    result = run_demo(subscribers=4000, days=4, settle_days=3, home=tmp_path / "demo")
    assert demo_home_in(tmp_path) == tmp_path / "demo"
    # the report covers the business days the demo showed, not the morning after its last
    period = result.report.period
    assert (period.since, period.until) == (DEMO_START, DEMO_START + timedelta(days=6))
    assert period.first == DEMO_START and period.last is not None and period.last <= period.until
    for c in result.report.campaigns:
        assert c["targeted"] == c["suppressed"] + c["held_out"] + c["sent"] + _unsent(result, c)
    total = result.report.totals()
    assert total["sent"] > 0 and total["replied"] > 0 and total["rated"] > 0
    assert 0 < total["csat"] < 100
    assert total["second_round_sent"] > 0 and total["recovered"] > 0
    shown = dict(summary_rows(result.report))
    assert shown["dissatisfied"] == total["dissatisfied"]
    # the response rate can be checked from the rows beside it: rated per survey sent
    assert shown["response rate (% of surveys rated)"] == round(
        100 * shown["rated"] / shown["surveyed"], 1
    )
    assert result.report.replies["matched"] > 0
    assert sum(result.report.replies.values()) >= total["replied"]
    assert "## Replies, by attribution" in result.report_path.read_text()
    lists = sorted((result.report_path.parent / "store_lists").glob("*.csv"))
    cases = connect(result.home / "warehouse.duckdb")
    _the_demos_figures_agree(result, cases, lists, settings.case_sla_hours)
    # collect stored the lift's settled days up to the day before yesterday: at least the
    # past before the first demo day (the report alone stores to 90 days before its day)
    [(through,)] = cases.execute("SELECT through FROM care_firsts_stored").fetchall()
    assert DEMO_START - timedelta(days=1) <= through <= period.until
    # every planning run, second rounds included, names the Prefect flow run that made it
    # (the generated history before the demo was made by no flow)
    runs = cases.execute(
        "SELECT round, count(*), count(flow_run_id) FROM campaign_runs WHERE run_id <> ? "
        "GROUP BY round ORDER BY 1",
        [HISTORY_RUN],
    ).fetchall()
    assert [r[0] for r in runs] == [1, 2] and all(r[1] == r[2] for r in runs)
    cases.close()
    with lists[0].open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(int(r["score"]) <= 2 for r in rows)
    assert {r["store_id"] for r in rows} == {lists[0].stem}
    with get_client(sync_client=True) as client:
        # read_artifacts() sends null filters, which prefect 3.8 on fastapi 0.154 answers with
        # 422, and empty ones join on task runs (dropping flow-level artifacts): ask directly.
        response = client._client.post(
            "/artifacts/filter", json={"limit": 200, "offset": 0, "sort": "CREATED_DESC"}
        )
        keys = {artifact["key"] for artifact in response.json()}
    assert {"care-loop-birthday", "collect-feedback", "second-round"} <= keys
    monthly = json.loads(result.monthly_path.with_suffix(".json").read_text())
    assert monthly["month"] == "2026-02"
    topics = {t["topic"]: t for t in monthly["topics"]}
    assert topics["billing"]["hot"] and topics["billing"]["previous"] == 0  # planted in Feb
    (lift,) = monthly["lift"]  # the year of store-visit care, some of it held out
    assert lift["campaign"] == "store_visit" and lift["n_holdout"] > 0


def test_the_demo_pointed_at_its_own_home_refuses_and_deletes_nothing(settings, monkeypatch):
    """The README has users export CARELOOP_HOME=.careloop/demo to work on the demo's data,
    and `make up` may keep a stack's database and pid files there: `make demo` run after that
    neither nests a demo inside that home nor deletes it."""
    from core.errors import UserError

    first = run_demo(subscribers=100, days=1, settle_days=0)
    assert first.home == (settings.home / "demo").resolve()
    (first.home / "run").mkdir()
    (first.home / "run" / "prefect-server.pid").write_text("12345")
    monkeypatch.setenv("CARELOOP_HOME", str(first.home))
    with pytest.raises(UserError, match="is a demo's home"):
        run_demo(subscribers=100, days=1, settle_days=0, seed=8)
    assert (first.home / "run" / "prefect-server.pid").read_text() == "12345"
    assert (first.home / "warehouse.duckdb").is_file() and not (first.home / "demo").exists()


def test_monthly_report_flow_writes_the_report_and_its_artifact(settings):
    from flows.monthly_report import monthly_report

    con = connect(settings.warehouse_path)
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, store_id, channel, intent, score,
            comment, attribution, received_at)
        SELECT 'e' || i, 'd' || i, 'ST1', 'sms', 'rating', 1, '排队太久了', 'matched',
            TIMESTAMPTZ '2026-02-27 23:30:00+08' FROM range(5) t(i)"""
    )
    con.close()
    # 2026-03-01 00:30 in Shanghai is still February 28 in UTC: last month is February
    figures = monthly_report(home=str(settings.home), now=datetime(2026, 2, 28, 16, 30, tzinfo=UTC))
    assert figures["month"] == "2026-02"
    assert Path(figures["html"]).exists() and Path(figures["json"]).exists()
    assert next(k["kpi"] for k in figures["kpis"]) == "csat"
    # as `careloop report` writes: the schedule wrote the KPIs only, and the loop report and
    # the managers' lists stayed as the last hand-run report left them
    assert Path(figures["loop"]) == settings.reports_dir / "loop-2026-02.md"
    assert "careloop: the loop in 2026-02" in Path(figures["loop"]).read_text()
    assert figures["store_lists"] == len(list((settings.reports_dir / "store_lists").glob("*.csv")))
    with get_client(sync_client=True) as client:
        response = client._client.post(
            "/artifacts/filter", json={"limit": 50, "offset": 0, "sort": "CREATED_DESC"}
        )
        keys = {artifact["key"] for artifact in response.json()}
    assert {"monthly-kpis", "monthly-report"} <= keys


def _the_demos_figures_agree(result, con, lists, sla_hours):
    """One figure, one definition: the console's opt-outs are the campaign table's and the
    by-channel section's; the lists hold the cases the managers' page shows at the demo's end,
    each in the section its status puts it in; for the monthly report's month, the loop
    report's SLA compliance is the monthly report's."""
    total = result.report.totals()
    figures = dict(summary_rows(result.report))
    assert figures["opted out"] == total["opted_out"] == sum(result.report.opt_outs.values()) > 0
    now = end_of_day(DEMO_START + timedelta(days=4 + 3 - 1))
    _, page = board_rows(con, now, sla_hours, CLOSED_SHOWN_DAYS)
    assert sum(result.store_rows.values()) == len(page)
    listed = []
    for path in lists:
        with path.open(encoding="utf-8-sig") as handle:
            listed += list(csv.DictReader(handle))
    assert all(r["section"] == ("to do" if r["status"] in ACTIVE else "closed") for r in listed)
    to_do = sum(c["status"] in ACTIVE for c in page)
    assert sum(r["section"] == "to do" for r in listed) == to_do
    monthly = json.loads(result.monthly_path.with_suffix(".json").read_text())
    (sla,) = [k for k in monthly["kpis"] if (k["kpi"], k["scope"]) == ("sla_compliance", "overall")]
    month = loop_report(
        con, "Asia/Shanghai", date(2026, 2, 1), date(2026, 2, 28), now=now, sla_hours=sla_hours
    )
    assert month.cases["sla_due"] == sla["n"] > 0
    assert month.cases["sla_compliance"] == round(100 * sla["value"], 1)


def _unsent(result, campaign):
    """Queued actions the demo's last dispatch had not reached (due after its clock stopped)."""
    con = connect(result.home / "warehouse.duckdb")
    row = con.execute(
        "SELECT count(*) FROM care_actions WHERE round = 1 AND campaign_id = ? "
        "AND status IN ('queued', 'failed')",
        [campaign["campaign_id"]],
    ).fetchone()
    con.close()
    return row[0]


def test_flow_figures_keep_counts_by_name():
    from campaigns.dispatch import DispatchFigures
    from core.output import flatten
    from flows.common import figures_dict

    figures = DispatchFigures()
    figures.sent["sms"] += 8
    figures.failed["21211"] += 1
    plain = figures_dict(figures)
    assert plain["sent"] == {"sms": 8} and plain["failed"] == {"21211": 1}
    assert {"figure": "sent.sms", "value": 8} in flatten(plain)
