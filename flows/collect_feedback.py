"""Drain the reply inbox into the warehouse: score, attribute, apply opt-outs and statuses."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from campaigns.channels.factory import deliver_pending_receipts
from campaigns.send_time import keep_settled_days
from cases.board import Board
from cases.collect import collect
from cases.follow_up import plan_follow_ups
from cases.publishing import publish_boards
from core.clock import utc_now
from core.progress import step_done
from feedback.ingest import watermark
from flows.common import figures_dict, publish, sending_turn, settings_for, writing_warehouse
from inbox.inbox import Inbox
from insights.first_care import store_past_days


@flow(name="collect-feedback")
def collect_feedback(home: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    settings = settings_for(home)
    at = now or utc_now()
    # Not while a dispatch sends: a status callback or a reply for a message in flight would be
    # read before its send is recorded, and lost or misattributed. Dispatch collects between
    # its own batches instead.
    with sending_turn(settings), writing_warehouse(settings) as con:
        # receipts a crashed dispatch's sends never gave the inbox: collected with the
        # replies that answer them, so those find their survey
        redelivered = deliver_pending_receipts(settings)
        figures = figures_dict(
            collect(
                con,
                inbox := Inbox.of(settings),
                reply_window=timedelta(hours=settings.reply_window_hours),
                now=at,
            )
        )
        figures["receipts_redelivered"] = redelivered
        figures["follow_ups_queued"] = plan_follow_ups(con, settings, at)
        figures["inbox_pruned"] = inbox.prune(
            watermark(con, inbox), at - timedelta(days=settings.inbox_retention_days)
        )
        # the managers' boards, fresh every collect cycle
        figures["board_cases"] = publish_boards(
            con, Board(inbox), at, settings.case_sla_hours, watermark(con, inbox)
        )
        # the retention lift's first care of the settled days before yesterday (most collects
        # find nothing new): the monthly report then finds its days stored instead of storing a
        # month of them (insights/first_care.py). After the boards: they are the managers'
        # work, this only saves the report time
        store_past_days(con, settings.timezone, at)
        # likewise the send-hour learning's settled days: the morning's first plan then reads
        # the day that settled overnight as stored, instead of storing it before it can plan
        figures["send_hour_days_stored"] = keep_settled_days(con, at)
    step_done("collect", figures)
    publish("collect-feedback", "Replies and status events ingested", figures)
    return figures
