"""Collect: feedback's drain of the inbox, with the cases' part in it.

A manager's change lands in the same inbox as the customers' replies and is applied in the
same batch transaction, after the replies. Once the inbox is drained, the ratings move their
cases; with ``now``, a second round left unanswered for the whole reply window makes its case
unresolved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from cases.board import CASE_EVENT
from cases.lifecycle import ingest_case_events, unanswered_cases, update_cases
from feedback.ingest import CollectFigures, drain, watermark
from inbox.inbox import Inbox, InboxItem


@dataclass
class LoopFigures(CollectFigures):
    case_changes: int = 0  # managers' changes accepted


def collect(
    con: duckdb.DuckDBPyConnection,
    inbox: Inbox,
    *,
    reply_window: timedelta,
    now: datetime | None = None,
) -> LoopFigures:
    """Drain the inbox and move the cases; with ``now``, also mark the cases whose second
    round went unanswered for the whole reply window."""
    figures = LoopFigures()

    def managers_changes(con: duckdb.DuckDBPyConnection, fresh: list[InboxItem]) -> None:
        figures.case_changes += ingest_case_events(con, [i for i in fresh if i.kind == CASE_EVENT])

    drain(con, inbox, reply_window=reply_window, figures=figures, also=[managers_changes])
    update_cases(con)
    if now is not None:
        unanswered_cases(con, now, reply_window)
    return figures


# Twilio's and the sandbox's delivery receipts: they change no one's consent (SendGrid's
# events carry "event", and one may be an unsubscribe; Twilio's opt-out comes back on the
# send). replace(), not LIKE: the inbox's SQL holds no "%" (inbox.postgres).
RECEIPTS = "kind = 'status' AND replace(payload, '\"event\"', '') = payload"


class NewsWatch:
    """Collect between two batches of sending when anything but receipts waits: a reply or
    an unsubscribe may stop the next message, while the receipts of the messages just sent
    (as many as were sent) wait for the next collect. Each inbox item is looked at once."""

    def __init__(
        self, con: Callable[[], duckdb.DuckDBPyConnection], inbox: Inbox, reply_window: timedelta
    ) -> None:
        self.con, self.inbox, self.reply_window = con, inbox, reply_window
        self.seen: int | None = None

    def __call__(self) -> LoopFigures | None:
        con = self.con()
        since = watermark(con, self.inbox) if self.seen is None else self.seen
        news, self.seen = self.inbox.news_between(since, f"NOT ({RECEIPTS})")
        return collect(con, self.inbox, reply_window=self.reply_window) if news else None
