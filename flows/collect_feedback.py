"""Drain the reply inbox into the warehouse: score, attribute, apply opt-outs and statuses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow

from careloop.progress import step_done
from feedback.inbox import Inbox
from feedback.ingest import collect
from flows.common import figures_dict, publish, settings_for, writing_warehouse


@flow(name="collect-feedback")
def collect_feedback(home: str | None = None) -> dict[str, Any]:
    settings = settings_for(home)
    with writing_warehouse(settings) as con:
        figures = figures_dict(
            collect(
                con,
                Inbox(settings.inbox_path),
                reply_window=timedelta(hours=settings.reply_window_hours),
            )
        )
    step_done("collect", figures)
    publish("collect-feedback", "Replies and status events ingested", figures)
    return figures
