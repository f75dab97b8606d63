"""What every flow shares: settings for a home folder and publishing figures as an artifact."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from campaigns.channels.base import Provider
from campaigns.channels.factory import get_provider
from campaigns.dispatch import dispatch
from campaigns.retry import RetryPolicy
from cases.collect import NewsWatch, collect
from cases.late_opt_outs import LateOptOuts
from core.clock import utc_now
from core.files import close_home, owner_only_process
from core.masking import install_masking
from core.output import flatten
from core.progress import step_done
from core.settings import Settings, load_settings
from feedback.ingest import watermark
from inbox.inbox import Inbox
from warehouse.db import Session, warehouse
from warehouse.turn import SENDING, this_process, turn


def settings_for(home: str | None) -> Settings:
    """The settings a flow runs with. A flow may run in a worker's process, started by
    anyone with any umask: what it creates is its owner's only all the same."""
    install_masking()
    owner_only_process()
    settings = load_settings(home=Path(home)) if home else load_settings()
    close_home(settings.home)
    return settings


@contextmanager
def writing_warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse, opened once this flow has its turn (waiting for it, and saying for whom);
    the turn is the warehouse file's own, so it needs no Prefect server and dies with a
    crashed holder."""
    with warehouse(settings.warehouse_path, holder=flow_holder()) as con:
        yield con


def holding_warehouse(settings: Settings) -> Session:
    """The warehouse for work that waits on the network meanwhile (mail): held in turns, let
    go while it waits (``Session.released``)."""
    return Session(settings.warehouse_path, flow_holder())


def sending_turn(settings: Settings) -> AbstractContextManager[None]:
    """The warehouse's sending turn: a dispatch holds it for its whole run, and collect takes it
    too (see warehouse.turn); always before the warehouse."""
    return turn(settings.warehouse_path, flow_holder(), kind=SENDING)


def flow_holder() -> str:
    """``collect-feedback (flow run brisk-otter, pid 4242)``, as a waiter shows it."""
    name = flow_run.get_flow_name()
    if not name:
        return this_process()
    return f"{name} (flow run {flow_run.get_name()}, pid {os.getpid()})"


def end_of_day(day: date) -> datetime:
    """The UTC midnight that ends ``day``: the demo's clock when that day's work is done."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def current_flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def send_due(settings: Settings, now: datetime | None, simulated: bool) -> dict[str, Any]:
    """Send what is due through the configured provider; the dispatch figures. Without an
    injected ``now`` the run follows the wall clock, batch by batch. Before each batch the
    inbox is collected if a reply or an unsubscribe waits in it, so an opt-out that arrived a
    moment ago stops the next message (receipts wait for the next collect, but for those of
    sends a killed run made and did not record, collected before the run screens the outbox);
    on the network, each message looks at the inbox's news once more right before it leaves.

    The run holds the sending turn throughout, and the warehouse only between network calls:
    call it outside any hold of the warehouse."""
    inbox = Inbox.of(settings)
    reply_window = timedelta(hours=settings.reply_window_hours)
    path, holder = settings.warehouse_path, flow_holder()
    provider = get_provider(settings)
    with sending_turn(settings), Session(path, holder) as held:
        # Receipts of sends the outbox does not know yet (a killed run's, or put again at the
        # sandbox's start) are collected before the screen, which would expire those sends as
        # never made. The receipts of sends already recorded wait for collect, as before.
        if sent_unrecorded(held.con, inbox):
            collect(held.con, inbox, reply_window=reply_window)
        figures = dispatch(
            held,
            provider,
            now=now or utc_now(),
            clock=None if now else utc_now,
            simulated=simulated,
            batch_size=_batch_size(settings, provider),
            retry=RetryPolicy(settings.retry_max_attempts, settings.retry_base_seconds),
            refresh=NewsWatch(lambda: held.con, inbox, reply_window),
            stop_watch=None if simulated or not provider.remote else LateOptOuts(inbox),
        )
    sent = figures_dict(figures)
    step_done("send, all campaigns", sent)  # what is due is sent, whichever run planned it
    return sent


def sent_unrecorded(con: duckdb.DuckDBPyConnection, inbox: Inbox) -> bool:
    """Whether a receipt or callback waiting in the inbox names an action the outbox still has
    queued, never attempted: a send a killed run made and did not record."""
    named = inbox.actions_with_news(watermark(con, inbox))
    if not named:
        return False
    found = con.execute(
        "SELECT 1 FROM care_actions WHERE status = 'queued' AND attempts = 0 "
        "AND action_id IN (SELECT unnest($named)) LIMIT 1",
        {"named": named},
    ).fetchone()
    return found is not None


def _batch_size(settings: Settings, provider: Provider) -> int:
    """``CARELOOP_DISPATCH_BATCH_SIZE`` when set; else a provider on the network takes the
    default, and a local one (the sandbox) its largest batch: a batch's statements cost about
    the same for 10,000 actions as for 500."""
    if "dispatch_batch_size" in settings.model_fields_set or provider.remote:
        return settings.dispatch_batch_size
    return provider.max_batch


def figures_dict(figures: object) -> dict[str, Any]:
    """A figures dataclass as plain data. Not dataclasses.asdict: it rebuilds a Counter from
    its (key, count) pairs, so the Counter counts the pairs."""
    assert is_dataclass(figures) and not isinstance(figures, type)
    return {
        f.name: dict(value) if isinstance(value := getattr(figures, f.name), Counter) else value
        for f in fields(figures)
    }


def publish(key: str, description: str, figures: Mapping[str, Any]) -> None:
    """Record a flow's figures as a Prefect table artifact (key: lower case and dashes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    create_table_artifact(table=flatten(figures), key=slug, description=description)
