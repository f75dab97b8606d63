"""Collect: feedback's drain of the inbox, with the cases' part in it.

A manager's change lands in the same inbox as the customers' replies and is applied in the
same batch transaction, after the replies. Once the inbox is drained, the ratings move their
cases; with ``now``, a second round left unanswered for the whole reply window makes its case
unresolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from cases.board import CASE_EVENT
from cases.lifecycle import ingest_case_events, unanswered_cases, update_cases
from feedback.ingest import CollectFigures, drain
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
