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
    deferred_to_window: int = 0
    opted_out_at_provider: int = 0
    unconfirmed: int = 0


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
    reconcile(con, provider, now, figures)
    figures.suppressed_at_send = suppress_opted_out(con, now)
    if not simulated:
        figures.deferred_to_window = defer_outside_window(con, now)
    size = min(batch_size, provider.max_batch)
    while not (batch := claim(con, now, size, simulated)).is_empty():
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


# The customer's local time of day, as TIME, at moment {at}.
LOCAL_TIME = "CAST(timezone(timezone, {at}) AS TIME)"
IN_WINDOW = (
    "(window_start IS NULL OR timezone IS NULL OR "
    f"({LOCAL_TIME} >= window_start AND {LOCAL_TIME} < window_end))"
)


def defer_outside_window(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """SMS and calls due now but outside the customer's window wait for its next opening."""
    local = LOCAL_TIME.format(at="$now")
    rows = con.execute(
        f"""
        UPDATE care_actions SET updated_at = $now, scheduled_at = timezone(timezone,
            CASE WHEN {local} < window_start
                 THEN CAST(timezone(timezone, $now) AS DATE) + window_start
                 ELSE CAST(timezone(timezone, $now) AS DATE) + 1 + window_start END)
        WHERE status = 'queued' AND scheduled_at <= $now AND NOT {IN_WINDOW.format(at="$now")}
        RETURNING 1""",
        {"now": now},
    ).fetchall()
    return len(rows)


def claim(
    con: duckdb.DuckDBPyConnection, now: datetime, size: int, simulated: bool = False
) -> pl.DataFrame:
    """Mark the next due batch ``sending`` (committed before anything is sent)."""
    at = "scheduled_at" if simulated else "$now"
    return query_frame(
        con,
        f"""
        UPDATE care_actions SET status = 'sending', claimed_at = $now,
            attempts = attempts + 1, updated_at = $now
        WHERE action_id IN (
            SELECT action_id FROM care_actions
            WHERE status = 'queued' AND scheduled_at <= $now AND {IN_WINDOW.format(at=at)}
            ORDER BY scheduled_at, action_id LIMIT $size)
        RETURNING action_id, idempotency_key, subscriber_id, channel, recipient, subject,
            body, locale, scheduled_at, attempts""",
        {"now": now, "size": size},
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
    """Write each result: sent, failed, back to the queue, or (unconfirmed) left sending."""
    outcome = pl.DataFrame(
        {
            "action_id": [r.action_id for r in results],
            "provider_id": [r.provider_id for r in results],
            "error_code": [r.error_code for r in results],
            "error": [r.error for r in results],
            "retryable": [r.retryable for r in results],
            "ok": [r.ok for r in results],
            "opted_out": [r.opted_out for r in results],
            "unconfirmed": [r.unconfirmed for r in results],
            "sender": [r.sender for r in results],
            "sent_at": [m.send_at for m in messages],
        },
        schema_overrides={
            "provider_id": pl.String,
            "error_code": pl.String,
            "error": pl.String,
            "sender": pl.String,
        },
    )
    register_frame(con, "send_outcome", outcome)
    con.execute(
        """
        UPDATE care_actions a SET
            status = CASE WHEN o.ok THEN 'sent'
                          WHEN o.unconfirmed THEN 'sending'
                          WHEN o.retryable AND a.attempts < ? THEN 'queued'
                          ELSE 'failed' END,
            provider_id = o.provider_id, error_code = o.error_code, error = o.error,
            sent_at = CASE WHEN o.ok THEN o.sent_at END, updated_at = ?,
            sender = coalesce(o.sender, a.sender)
        FROM send_outcome o WHERE a.action_id = o.action_id""",
        [MAX_ATTEMPTS, now],
    )
    con.execute(
        """
        INSERT INTO opt_outs
        SELECT a.subscriber_id, a.channel, 'opt_out', ?, 'provider_' || o.error_code,
               'provider:' || a.action_id
        FROM send_outcome o JOIN care_actions a USING (action_id)
        WHERE o.opted_out
        ON CONFLICT DO NOTHING""",
        [now],
    )
    con.unregister("send_outcome")
    _count(messages, results, figures)


def _count(
    messages: list[OutboundMessage], results: list[SendResult], figures: DispatchFigures
) -> None:
    for message, result in zip(messages, results, strict=True):
        if result.ok:
            figures.sent[message.channel] += 1
        elif result.unconfirmed:
            figures.unconfirmed += 1
        elif result.retryable:
            figures.retrying += 1
        else:
            figures.failed[result.error_code or "unknown"] += 1
            figures.opted_out_at_provider += result.opted_out


def reconcile(
    con: duckdb.DuckDBPyConnection, provider: Provider, now: datetime, figures: DispatchFigures
) -> None:
    """Settle actions a crash (or a timeout) left ``sending``: ask the provider, never resend
    blindly. Unconfirmed ones go back to the queue only once the provider's grace has passed."""
    rows = query_frame(
        con,
        "SELECT action_id, idempotency_key, channel, recipient, subject, body, locale, "
        "claimed_at AS scheduled_at FROM care_actions WHERE status = 'sending'",
    )
    if rows.is_empty():
        return
    # send_at carries the claim time (the query names it scheduled_at): a provider looks for
    # each send from that moment on.
    messages = [_message(row, now, simulated=True) for row in rows.iter_rows(named=True)]
    accepted = provider.find_sent(messages)
    settled = pl.DataFrame(
        {
            "action_id": [m.action_id for m in messages],
            "provider_id": [accepted.get(m.action_id) for m in messages],
            "claimed_at": [m.send_at for m in messages],
            "requeue": [
                m.action_id not in accepted and now - m.send_at >= provider.grace_for(m.channel)
                for m in messages
            ],
        },
        schema_overrides={"provider_id": pl.String, "claimed_at": pl.Datetime("us", "UTC")},
    )
    register_frame(con, "settled", settled)
    con.execute("""
        UPDATE care_actions a SET
            status = CASE WHEN s.provider_id IS NOT NULL THEN 'sent' ELSE 'queued' END,
            provider_id = s.provider_id,
            sent_at = CASE WHEN s.provider_id IS NOT NULL THEN s.claimed_at END
        FROM settled s
        WHERE a.action_id = s.action_id AND (s.provider_id IS NOT NULL OR s.requeue)""")
    con.unregister("settled")
    figures.reconciled_sent = len(accepted)
    figures.reconciled_requeued = int(settled["requeue"].sum())
