"""The demo: a synthetic warehouse, then the whole loop day by day on the sandbox.

The clock is simulated: each day's work happens "at" the end of that day, messages go at their
scheduled times and customers answer with realistic delays, so the demo never sleeps.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from campaigns.catalog import load_campaigns
from campaigns.channels.sandbox import SandboxProvider
from cases.board import Board
from core.errors import UserError
from core.files import write_private_text
from core.progress import step_done, steps_muted, tracked
from core.settings import Settings
from demo.customers import RECENT_DAYS, TROUBLED_STORE
from demo.data import DemoDataSummary, build_demo_data
from demo.simulator import CustomerSimulator, PendingReplies, Profile
from demo.store_managers import StoreManagers
from flows.care_loop import care_loop
from flows.collect_feedback import collect_feedback
from flows.common import end_of_day, settings_for
from flows.dispatch_outbox import dispatch_outbox
from flows.manager_cases import escalate_cases, manager_digests
from flows.second_round import second_round
from inbox.inbox import Inbox
from insights.monthly import MonthlyReport, configured_monthly_report
from insights.report import LoopReport, write_reports
from insights.report_html import write_month
from warehouse.db import warehouse

# Spans Feb 28 of a non-leap year, so Feb 29 birthdays and anniversaries show up.
DEMO_START = date(2026, 2, 16)
# In a demo's home, which the demo deletes and rebuilds: how it knows one (demo_home_in).
DEMO_MARK = "DEMO.txt"


@dataclass(frozen=True)
class DemoResult:
    home: Path
    data: DemoDataSummary
    report: LoopReport
    store_rows: dict[str, int]
    report_path: Path
    monthly_path: Path  # the KPI report (HTML) of the demo's month


def run_demo(
    *,
    subscribers: int = 50_000,
    seed: int = 7,
    start: date = DEMO_START,
    days: int = 14,
    settle_days: int = 4,
    home: Path | None = None,
) -> DemoResult:
    """The demo, each simulated day told as one step (its flows' own steps muted)."""
    if settings_for(None).inbox_url is not None:
        # The demo starts from nothing each time; a shared inbox is never emptied for it.
        raise UserError(
            "the demo keeps its own inbox in its home: unset CARELOOP_INBOX_URL to run it"
        )
    demo_home = (home or demo_home_in(settings_for(None).home)).resolve()
    shutil.rmtree(demo_home, ignore_errors=True)  # the demo home holds nothing but the demo
    settings = settings_for(str(demo_home))
    write_private_text(
        demo_home / DEMO_MARK,
        "careloop demo's home: `careloop demo` deletes and rebuilds this folder. Pointed at\n"
        "it (CARELOOP_HOME), careloop works on the demo's data; the demo itself refuses to run\n"
        "from here.\n",
    )
    last_day = start + timedelta(days=days - 1)
    with warehouse(settings.warehouse_path) as con:
        data = build_demo_data(
            con, subscribers=subscribers, seed=seed, until=last_day, history_before=start
        )
        simulator = _customers(settings, seed, customer_profiles(con, start, last_day))
    step_done(
        "demo data",
        {"stores": data.stores, "subscribers": data.subscribers, "past ratings": data.past_ratings},
    )
    campaigns = sorted(load_campaigns(settings))
    managers = StoreManagers(Board(Inbox.of(settings)), seed)
    with tracked("care loop, day by day", days + settle_days) as advance:
        for offset in range(days + settle_days):
            day = start + timedelta(days=offset)
            with steps_muted():
                figures = run_day(
                    day, campaigns if offset < days else [], str(demo_home), simulator, managers
                )
            step_done(f"day {day}", figures)
            advance(1)
    return finish(settings.home, data, start, start + timedelta(days=days + settle_days - 1))


def demo_home_in(home: Path) -> Path:
    """Where the demo runs for a careloop home: its ``demo`` folder, which it deletes first. A
    home that is itself a demo's (it holds DEMO_MARK: the README has users point CARELOOP_HOME
    there to work on the demo's data) is refused, not nested into, and never deleted: the
    stack `make up` started for it keeps its database and pid files there."""
    if (home / DEMO_MARK).is_file():
        raise UserError(
            f"CARELOOP_HOME ({home}) is a demo's home: the demo runs in its parent's demo "
            "folder; unset CARELOOP_HOME (or point it at that parent) to run it again"
        )
    return home / "demo"


def _customers(settings: Settings, seed: int, profiles: dict[str, Profile]) -> CustomerSimulator:
    """The demo's customers, answering what the sandbox delivers into its inbox."""
    inbox = Inbox.of(settings)
    return CustomerSimulator(
        SandboxProvider(settings.sandbox_path, inbox),
        inbox,
        PendingReplies(settings.home / "simulator.sqlite"),
        seed=seed,
        profiles=profiles,
    )


PROFILES_SQL = """
SELECT s.subscriber_id, s.phone, s.email, s.tier, s.timezone,
       date_diff('day', s.joined_on, $day) / 365.25 AS tenure_years,
       coalesce(s.home_store_id = $troubled, false) AS troubled,
       EXISTS (SELECT 1 FROM action_ratings r WHERE r.subscriber_id = s.subscriber_id
               AND r.score <= 2 AND r.received_at >= $start - to_days($recent)
               AND r.received_at < $start) AS recent_complaint
FROM subscribers s
"""


def customer_profiles(con: duckdb.DuckDBPyConnection, start: date, day: date) -> dict[str, Profile]:
    """The simulated customers' traits, keyed by the phone and email their messages go to:
    tenure as of ``day``, a complaint in the weeks before ``start``."""
    profiles: dict[str, Profile] = {}
    params = {"day": day, "start": start, "recent": RECENT_DAYS, "troubled": TROUBLED_STORE}
    rows = con.execute(PROFILES_SQL, params).fetchall()
    for subscriber_id, phone, email, tier, zone, tenure, troubled, recent in rows:
        profile = Profile(subscriber_id, tier, float(tenure), bool(recent), bool(troubled), zone)
        for address in (phone, email):
            if address:
                profiles[address] = profile
    return profiles


def run_day(
    day: date, campaigns: list[str], home: str, simulator: CustomerSimulator,
    managers: StoreManagers,
) -> dict[str, int]:  # fmt: skip
    """One simulated day; what it planned, sent and heard back, and what managers did."""
    now = end_of_day(day)
    morning = now - timedelta(days=1)  # 08:00 in Shanghai: campaigns are planned, lists go
    planned = [care_loop(name, as_of=day, send=False, home=home, now=morning) for name in campaigns]
    second = second_round(as_of=day, send=False, home=home, now=morning)
    digests = manager_digests(home=home, now=morning)
    worked = managers.work(morning)
    sent = dispatch_outbox(home=home, now=now, simulated=True)
    replies = simulator.react(until=now)
    collected = collect_feedback(home=home, now=now)
    escalated = escalate_cases(home=home, now=now)
    return {
        "planned": sum(sum(p["queued"].values()) for p in planned),
        "second rounds": sum(sum(f["queued"].values()) for f in second.values()),
        "cases opened": sum(f["cases_opened"] for f in second.values()),
        "sent": sum(sent["sent"].values()),
        "replies": replies["released"],
        "ratings": collected["intents"].get("rating", 0),
        "manager lists mailed": sum(d["sent"] for d in digests),
        "cases contacted": worked["contacted"],
        "resolved": worked["resolved"],
        "follow-ups": collected["follow_ups_queued"],
        "escalated": escalated["escalated"],
    }


def finish(home: Path, data: DemoDataSummary, start: date, end: date) -> DemoResult:
    """The demo's report covers its own days, ``start`` to ``end`` (the warehouse also holds
    the year before), as of the end of its last simulated day. A simulated day ends at 08:00
    the next morning in the business zone, with its collect: what is dated after midnight (the
    follow-ups that collect queues, replies and opt-outs received overnight) belongs to a day
    the demo did not show. With settle days (the default) the last day sends nothing, so
    little of the demo's care is answered then."""
    settings = settings_for(str(home))
    with warehouse(settings.warehouse_path) as con:
        monthly = configured_monthly_report(con, settings, start.strftime("%Y-%m"), end_of_day(end))
        written = write_reports(
            con,
            settings.reports_dir,
            "careloop demo: the loop over its days",  # the KPIs are the monthly HTML's
            settings.timezone,
            start,
            end,
            now=end_of_day(end),
            sla_hours=settings.case_sla_hours,
            reply_window_hours=settings.reply_window_hours,
            variants=monthly.variants,  # the same instant: its tests once
        )
    html, _ = write_month(monthly, settings.reports_dir)
    step_done("monthly KPI report", {"month": monthly.month, "flagged": _flagged(monthly)})
    return DemoResult(home, data, written.report, written.store_rows, written.path, html)


def _flagged(monthly: MonthlyReport) -> str:
    rows = [r for r in monthly.overall() if r.flag]
    return ", ".join(f"{r.kpi} {r.flag}" for r in rows) or "none"
