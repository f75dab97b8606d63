"""Step 5a: send the outbox through the provider, in batches, each action at most once.

Order of work per batch, chosen so that a crash at any point loses nothing and repeats nothing:
claim (queued -> sending, committed), send, record (sending -> sent/failed/queued). A later run
first reconciles any action still ``sending`` with the provider before sending anything new.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

from campaigns.channels.base import OutboundMessage, Provider, SendResult
from warehouse.db import query_frame, register_frame

MAX_ATTEMPTS = 5


@dataclass
class DispatchFigures:
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retrying: int = 0
    suppressed_at_send: int = 0
    reconciled_sent: int = 0
    reconciled_requeued: int = 0


def dispatch(
    con: duckdb.DuckDBPyConnection,
    provider: Provider,
    *,
    now: datetime,
    simulated: bool = False,
    batch_size: int = 500,
) -> DispatchFigures:
    """Send every queued action due by ``now``. With ``simulated`` each goes at its due time."""
    figures = DispatchFigures()
    reconcile(con, provider, figures)
    figures.suppressed_at_send = suppress_opted_out(con, now)
    size = min(batch_size, provider.max_batch)
    while not (batch := claim(con, now, size)).is_empty():
        messages = [_message(row, now, simulated) for row in batch.iter_rows(named=True)]
        results = provider.send(messages)
        record(con, messages, results, now, figures)
    return figures


def suppress_opted_out(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Opt-out is absolute: one that arrived after planning still stops the send."""
    row = con.execute(
        """
        UPDATE care_actions a SET status = 'suppressed', suppression_reason = 'opted_out',
            updated_at = ?
        FROM active_opt_outs o
        WHERE a.status = 'queued' AND o.subscriber_id = a.subscriber_id
          AND o.channel = a.channel AND o.occurred_at <= ?
        RETURNING 1""",
        [now, now],
    ).fetchall()
    return len(row)


def claim(con: duckdb.DuckDBPyConnection, now: datetime, size: int) -> pl.DataFrame:
    return query_frame(
        con,
        """
        UPDATE care_actions SET status = 'sending', claimed_at = ?, attempts = attempts + 1,
            updated_at = ?
        WHERE action_id IN (
            SELECT action_id FROM care_actions
            WHERE status = 'queued' AND scheduled_at <= ?
            ORDER BY scheduled_at, action_id LIMIT ?)
        RETURNING action_id, idempotency_key, channel, recipient, subject, body, locale,
            scheduled_at, attempts""",
        [now, now, now, size],
    )


def _message(row: dict[str, object], now: datetime, simulated: bool) -> OutboundMessage:
    scheduled = row["scheduled_at"]
    assert isinstance(scheduled, datetime)
    return OutboundMessage(
        action_id=str(row["action_id"]),
        idempotency_key=str(row["idempotency_key"]),
        channel=str(row["channel"]),
        recipient=str(row["recipient"] or ""),
        subject=None if row["subject"] is None else str(row["subject"]),
        body=str(row["body"]),
        locale=str(row["locale"]),
        send_at=scheduled if simulated else now,
    )


def record(
    con: duckdb.DuckDBPyConnection,
    messages: list[OutboundMessage],
    results: list[SendResult],
    now: datetime,
    figures: DispatchFigures,
) -> None:
    outcome = pl.DataFrame(
        {
            "action_id": [r.action_id for r in results],
            "provider_id": [r.provider_id for r in results],
            "error_code": [r.error_code for r in results],
            "error": [r.error for r in results],
            "retryable": [r.retryable for r in results],
            "ok": [r.ok for r in results],
            "sent_at": [m.send_at for m in messages],
        }
    )
    register_frame(con, "send_outcome", outcome)
    con.execute(
        """
        UPDATE care_actions a SET
            status = CASE WHEN o.ok THEN 'sent'
                          WHEN o.retryable AND a.attempts < ? THEN 'queued'
                          ELSE 'failed' END,
            provider_id = o.provider_id, error_code = o.error_code, error = o.error,
            sent_at = CASE WHEN o.ok THEN o.sent_at END, updated_at = ?
        FROM send_outcome o WHERE a.action_id = o.action_id""",
        [MAX_ATTEMPTS, now],
    )
    con.unregister("send_outcome")
    for message, result in zip(messages, results, strict=True):
        if result.ok:
            figures.sent[message.channel] += 1
        elif result.retryable:
            figures.retrying += 1
        else:
            figures.failed[result.error_code or "unknown"] += 1


def reconcile(con: duckdb.DuckDBPyConnection, provider: Provider, figures: DispatchFigures) -> None:
    """Settle actions a crash left ``sending``: ask the provider, never resend blindly."""
    in_flight = con.execute(
        "SELECT action_id, idempotency_key, claimed_at FROM care_actions WHERE status = 'sending'"
    ).fetchall()
    if not in_flight:
        return
    accepted = provider.find_sent([key for _, key, _ in in_flight])
    settled = pl.DataFrame(
        {
            "action_id": [a for a, _, _ in in_flight],
            "provider_id": [accepted.get(k) for _, k, _ in in_flight],
            "claimed_at": [c for _, _, c in in_flight],
        },
        schema={
            "action_id": pl.String,
            "provider_id": pl.String,
            "claimed_at": pl.Datetime("us", "UTC"),
        },
    )
    register_frame(con, "settled", settled)
    con.execute("""
        UPDATE care_actions a SET
            status = CASE WHEN s.provider_id IS NULL THEN 'queued' ELSE 'sent' END,
            provider_id = s.provider_id,
            sent_at = CASE WHEN s.provider_id IS NOT NULL THEN s.claimed_at END
        FROM settled s WHERE a.action_id = s.action_id""")
    con.unregister("settled")
    figures.reconciled_sent = sum(1 for k in (k for _, k, _ in in_flight) if k in accepted)
    figures.reconciled_requeued = len(in_flight) - figures.reconciled_sent
