"""The store managers' side of the loop, on schedule: escalations of overdue cases (hourly)
and each manager's morning list (daily, 08:00 in the business timezone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from campaigns.channels.factory import get_mailer
from cases.board import Board
from cases.digest import send_digests
from cases.escalation import escalate_overdue
from cases.publishing import publish_boards
from core.clock import business_date, utc_now
from core.progress import step_done
from feedback.ingest import watermark
from flows.common import holding_warehouse, publish, settings_for
from inbox.inbox import Inbox


@flow(name="escalate-cases")
def escalate_cases(home: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Cases not contacted within CARELOOP_CASE_SLA_HOURS go to their region's contact."""
    settings = settings_for(home)
    at = now or utc_now()
    with holding_warehouse(settings) as held:
        board = Board(Inbox.of(settings))
        # a manager's call not collected yet (a collect waits for a dispatch's whole run):
        # made within the SLA, its case waits for the next run
        called = board.called_since(watermark(held.con, board.inbox))
        figures: dict[str, Any] = escalate_overdue(
            held, get_mailer(settings), at, settings.case_sla_hours, called
        )
        figures["calls_not_collected"] = len(called)
        figures["board_cases"] = publish_boards(
            held.con, board, at, settings.case_sla_hours, watermark(held.con, board.inbox)
        )
    step_done("escalate", figures)
    publish("case-escalations", "Cases escalated past their SLA", figures)
    return figures


@flow(name="manager-digests")
def manager_digests(home: str | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each store manager's morning mail: counts, sign-in link, the list as CSV and XLSX."""
    settings = settings_for(home)
    at = now or utc_now()
    with holding_warehouse(settings) as held:
        sent = send_digests(
            held, get_mailer(settings), settings, at, business_date(settings.zone, at)
        )
    step_done("digests", {"stores": len(sent), "cases": sum(s["cases"] for s in sent)})
    create_table_artifact(table=sent, key="manager-digests", description="Cases sent per store")
    return sent
