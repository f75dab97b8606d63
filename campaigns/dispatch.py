"""Step 5a: send the outbox through the provider, in batches, each action at most once.

Order of work per batch, chosen so that a crash at any point loses nothing and repeats nothing:
claim (queued -> sending, committed), send, record (sending -> sent/failed/queued). A run first
settles any action still ``sending`` with the provider before sending anything new.

The standard is applied at the moment of sending: once a run over the whole open outbox
(opt-outs, send windows, expiry), then before each batch again for that batch's candidates only,
after the inbox's news (an opt-out that arrived a moment ago) is brought in. No statement of a
batch reads the settled history: every one is bounded by ``Open`` (see there), so a batch costs
the same with a year of sends behind it as on the first day.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from campaigns.channels.base import OutboundMessage, Provider, SendResult
from campaigns.retry import RetryPolicy
from core.progress import tracked
from warehouse.db import Held, Pinned, query_frame, register_frame

# A retry due this soon is waited for within the run; later ones wait for the next run.
LINGER = timedelta(seconds=60)


@dataclass
class DispatchFigures:
    sent: Counter[str] = field(default_factory=Counter)  # by channel
    failed: Counter[str] = field(default_factory=Counter)  # by error code
    retry_scheduled: int = 0
    suppressed_at_send: int = 0
    expired: int = 0
    reconciled_sent: int = 0
    reconciled_requeued: int = 0
    reconciled_waiting: int = 0
    unconfirmed: int = 0  # no word from the provider in time: for a person to review
    in_flight: int = 0  # timed out: settled by a later run, never resent blindly
    deferred_to_window: int = 0
    opted_out_at_provider: int = 0
    waiting: int = 0  # still queued when the run ended: due later (or a retry)


class DispatchHaltedError(RuntimeError):
    """The run stopped for everyone (refused credentials, a provider failing every request);
    every action not yet sent is still queued."""

    def __init__(self, reason: str, figures: DispatchFigures) -> None:
        super().__init__(reason)
        self.figures = figures


@dataclass(frozen=True)
class Open:
    """The part of the outbox a run may find open: actions created since the oldest action
    that was queued or sending when the run began. The outbox is appended in creation order,
    so ``created_at >= since`` lets DuckDB skip, by its zone maps, every row group of settled
    history. Exact: no action open at the start is older than ``since``, and one planned
    during the run with an earlier creation time (a plan given an earlier ``now``) is found
    by the run's look for older open actions before it ends."""

    since: datetime

    @classmethod
    def find(cls, con: duckdb.DuckDBPyConnection) -> Open | None:
        """None when nothing is open (once a run: this one reads the whole outbox)."""
        row = con.execute(
            "SELECT min(created_at) FROM care_actions WHERE status IN ('queued', 'sending')"
        ).fetchone()
        return cls(row[0]) if row and row[0] is not None else None

    def rows(self, alias: str = "", *, only_candidates: bool = False) -> str:
        """The predicate, for a statement that binds ``$since``; with ``only_candidates``,
        narrowed to the batch's candidates (``pick_candidates``)."""
        prefix = f"{alias}." if alias else ""
        where = f"{prefix}created_at >= $since"
        if only_candidates:
            where += f" AND {prefix}action_id IN (SELECT action_id FROM dispatch_candidates)"
        return where


# Everything, for a caller that did not look for the open part.
EVERYTHING = Open(datetime(1970, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Pace:
    """Where a run's time comes from. A live run reads the wall clock before each batch and
    waits for retries due soon; a fixed or simulated run uses ``now`` throughout."""

    now: datetime
    clock: Callable[[], datetime] | None = None
    sleep: Callable[[float], None] = time.sleep

    def current(self) -> datetime:
        return self.clock() if self.clock else self.now


def dispatch(
    warehouse: duckdb.DuckDBPyConnection | Held,
    provider: Provider,
    *,
    now: datetime,
    simulated: bool = False,
    batch_size: int = 500,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry: RetryPolicy | None = None,
    refresh: Callable[[], object] | None = None,
) -> DispatchFigures:
    """Send every queued action due by now. With ``simulated`` each goes at its due time.
    ``refresh`` brings the inbox's news (opt-outs above all) in before each batch. Given a
    ``Held`` warehouse, the run lets it go while it waits on the provider: a batch is claimed
    (committed) before, and recorded after, so others take their turns meanwhile."""
    held = Pinned(warehouse) if isinstance(warehouse, duckdb.DuckDBPyConnection) else warehouse
    pace = Pace(now, None if simulated else clock, sleep)
    retry = retry or RetryPolicy()
    figures = DispatchFigures()
    reconcile(held, provider, pace.current(), figures)
    _stop_if_halted(provider, figures)
    size = min(batch_size, provider.max_batch)
    if refresh:
        refresh()
    found = Open.find(held.con)
    if found is None:
        return figures
    live = pace.clock is not None
    apply_standard(held.con, pace.current(), simulated, figures, found, live=live)
    with tracked("sending", _due(held.con, pace.current(), found)) as advance:
        while True:
            if refresh:
                refresh()
            at = pace.current()  # after the news: what was collected has happened by now
            if not pick_candidates(held.con, at, size, simulated, found):
                older = Open.find(held.con)
                if older and older.since < found.since:  # planned meanwhile, as of earlier
                    found = older
                    continue
                wait = _retry_wait(held.con, at, found) if pace.clock else None
                if wait is None:
                    break
                with held.released():
                    pace.sleep(wait)
                continue
            apply_standard(held.con, at, simulated, figures, found, live, only_candidates=True)
            batch = claim_candidates(held.con, at, found)
            if batch.is_empty():  # the news stopped every candidate: on to the next ones
                continue
            messages = [_message(row, at, simulated) for row in batch.iter_rows(named=True)]
            attempts = dict(zip(batch["action_id"], batch["attempts"], strict=True))
            with held.released() if provider.remote else nullcontext():
                results = provider.send(messages)
            record(held.con, messages, results, at, figures, retry, attempts, found)
            advance(len(messages))
            _stop_if_halted(provider, figures)
    figures.waiting = _due(held.con, None, found)
    return figures


def _stop_if_halted(provider: Provider, figures: DispatchFigures) -> None:
    if provider.halted:
        raise DispatchHaltedError(provider.halted, figures)


def _due(con: duckdb.DuckDBPyConnection, by: datetime | None, found: Open) -> int:
    """Queued actions due by ``by`` (None: all of them, due now or later)."""
    row = con.execute(
        f"SELECT count(*) FROM care_actions WHERE {found.rows()} AND status = 'queued' "
        "AND (CAST($by AS TIMESTAMPTZ) IS NULL OR scheduled_at <= $by)",
        {"by": by, "since": found.since},
    ).fetchone()
    return int(row[0]) if row else 0


def apply_standard(
    con: duckdb.DuckDBPyConnection,
    at: datetime,
    simulated: bool,
    figures: DispatchFigures,
    found: Open = EVERYTHING,
    live: bool = False,
    *,
    only_candidates: bool = False,
) -> None:
    """The standard at send time: fresh opt-outs, send windows, expiry; over the open
    outbox, or only over the batch's candidates (``pick_candidates``). A live run heeds
    every opt-out collected, whatever time its host gave it (a service's clock may run a
    second ahead); a simulated or fixed-time run, those up to its moment."""
    until = None if live else at
    figures.suppressed_at_send += suppress_opted_out(con, at, found, only_candidates, until)
    if not simulated:
        figures.deferred_to_window += defer_outside_window(con, at, found, only_candidates)
    figures.expired += expire(con, at, simulated, found, only_candidates)


def suppress_opted_out(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    found: Open = EVERYTHING,
    only_candidates: bool = False,
    until: datetime | None = None,
) -> int:
    """Opt-out is absolute: one that arrived after planning still stops the send (one made
    by ``until``, when given)."""
    params: dict[str, object] = {"now": now, "since": found.since, "until": until}
    opted = "active_opt_outs"
    if only_candidates:
        # The candidates' customers only, as a list: a filter on the view's partition key
        # goes below its window, which then ranks their opt-outs, not every one ever made.
        opted = "(SELECT * FROM active_opt_outs WHERE list_contains($who, subscriber_id))"
        who = con.execute("SELECT DISTINCT subscriber_id FROM dispatch_candidates").fetchall()
        params["who"] = [row[0] for row in who]
    row = con.execute(
        f"""
        UPDATE care_actions a SET status = 'suppressed', suppression_reason = 'opted_out',
            updated_at = $now
        FROM {opted} o
        WHERE a.status = 'queued' AND o.subscriber_id = a.subscriber_id
          AND o.channel = a.channel
          AND (CAST($until AS TIMESTAMPTZ) IS NULL OR o.occurred_at <= $until)
          AND {found.rows("a", only_candidates=only_candidates)}
        RETURNING 1""",
        params,
    ).fetchall()
    return len(row)


def expire(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    simulated: bool,
    found: Open = EVERYTHING,
    only_candidates: bool = False,
) -> int:
    """A contact that can no longer go out before its expiry is archived as ``expired``: a
    birthday greeting is never sent the day after. A simulated run sends at each action's
    scheduled time, a live one no earlier than now."""
    send_time = "scheduled_at" if simulated else "greatest(scheduled_at, $now)"
    rows = con.execute(
        f"""
        UPDATE care_actions SET status = 'expired', suppression_reason = 'expired',
            error = 'expired at ' || strftime(expires_at, '%Y-%m-%d %H:%M UTC')
                    || ' before it could be sent',
            updated_at = $now
        WHERE {found.rows(only_candidates=only_candidates)} AND status = 'queued'
          AND expires_at IS NOT NULL AND expires_at <= {send_time}
        RETURNING 1""",
        {"now": now, "since": found.since},
    ).fetchall()
    return len(rows)


# The customer's local time of day, as TIME, at moment {at}.
LOCAL_TIME = "CAST(timezone(timezone, {at}) AS TIME)"
IN_WINDOW = (
    "(window_start IS NULL OR timezone IS NULL OR "
    f"({LOCAL_TIME} >= window_start AND {LOCAL_TIME} < window_end))"
)


def defer_outside_window(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    found: Open = EVERYTHING,
    only_candidates: bool = False,
) -> int:
    """SMS and calls due now but outside the customer's window wait for its next opening."""
    local = LOCAL_TIME.format(at="$now")
    rows = con.execute(
        f"""
        UPDATE care_actions SET updated_at = $now, scheduled_at = timezone(timezone,
            CASE WHEN {local} < window_start
                 THEN CAST(timezone(timezone, $now) AS DATE) + window_start
                 ELSE CAST(timezone(timezone, $now) AS DATE) + 1 + window_start END)
        WHERE {found.rows(only_candidates=only_candidates)} AND status = 'queued'
          AND scheduled_at <= $now AND NOT {IN_WINDOW.format(at="$now")}
        RETURNING 1""",
        {"now": now, "since": found.since},
    ).fetchall()
    return len(rows)


def pick_candidates(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    size: int,
    simulated: bool = False,
    found: Open = EVERYTHING,
) -> int:
    """``dispatch_candidates``: the next ``size`` queued actions due and inside their window
    (a simulated run sends each at its scheduled time); how many."""
    at = "scheduled_at" if simulated else "$now"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE dispatch_candidates AS
        SELECT action_id, subscriber_id FROM care_actions
        WHERE {found.rows()} AND status = 'queued' AND scheduled_at <= $now
          AND {IN_WINDOW.format(at=at)}
        ORDER BY scheduled_at, action_id LIMIT $size""",
        {"now": now, "size": size, "since": found.since},
    )
    row = con.execute("SELECT count(*) FROM dispatch_candidates").fetchone()
    return int(row[0]) if row else 0


def claim_candidates(
    con: duckdb.DuckDBPyConnection, now: datetime, found: Open = EVERYTHING
) -> pl.DataFrame:
    """Mark the candidates still queued ``sending`` (committed before anything is sent)."""
    return query_frame(
        con,
        f"""
        UPDATE care_actions SET status = 'sending', claimed_at = $now,
            attempts = attempts + 1, updated_at = $now
        WHERE {found.rows(only_candidates=True)} AND status = 'queued'
        RETURNING action_id, idempotency_key, subscriber_id, channel, recipient, subject,
            body, locale, scheduled_at, attempts""",
        {"now": now, "since": found.since},
    )


def claim(
    con: duckdb.DuckDBPyConnection, now: datetime, size: int, simulated: bool = False
) -> pl.DataFrame:
    """Mark the next due batch ``sending``, as a run does (the standard not applied)."""
    pick_candidates(con, now, size, simulated)
    return claim_candidates(con, now)


def _retry_wait(con: duckdb.DuckDBPyConnection, now: datetime, found: Open) -> float | None:
    """Seconds until the next retry falls due, if that is within LINGER."""
    row = con.execute(
        f"SELECT min(scheduled_at) FROM care_actions WHERE {found.rows()} AND "
        "status = 'queued' AND attempts > 0 AND scheduled_at > $now AND scheduled_at <= $until",
        {"now": now, "until": now + LINGER, "since": found.since},
    ).fetchone()
    if not row or row[0] is None:
        return None
    due: datetime = row[0]
    return max((due - now).total_seconds(), 0.0)


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


RECORD_SQL = """
UPDATE care_actions a SET
    status = CASE WHEN o.ok THEN 'sent'
                  WHEN o.unconfirmed THEN 'sending'
                  WHEN o.not_attempted OR o.retry_at IS NOT NULL THEN 'queued'
                  ELSE 'failed' END,
    attempts = a.attempts - CASE WHEN o.not_attempted THEN 1 ELSE 0 END,
    scheduled_at = coalesce(o.retry_at, a.scheduled_at),
    provider_id = CASE WHEN o.not_attempted THEN a.provider_id ELSE o.provider_id END,
    error_code = CASE WHEN o.not_attempted THEN a.error_code ELSE o.error_code END,
    error = CASE WHEN o.not_attempted THEN a.error ELSE o.error END,
    sent_at = CASE WHEN o.ok THEN o.sent_at END,
    updated_at = $now,
    sender = coalesce(o.sender, a.sender)
FROM send_outcome o WHERE a.action_id = o.action_id AND a.created_at >= $since
RETURNING a.action_id, a.channel, a.status, a.error_code"""


def record(
    con: duckdb.DuckDBPyConnection,
    messages: list[OutboundMessage],
    results: list[SendResult],
    now: datetime,
    figures: DispatchFigures,
    retry: RetryPolicy,
    attempts: dict[str, int],
    found: Open = EVERYTHING,
) -> None:
    """Write each result: sent, failed, back to the queue (now or at its retry time), or
    (unconfirmed) left sending. The figures count what the database now says."""
    outcome = _outcome_frame(messages, results, now, retry, attempts)
    register_frame(con, "send_outcome", outcome)
    rows = con.execute(RECORD_SQL, {"now": now, "since": found.since}).fetchall()
    con.execute(
        f"""
        INSERT INTO opt_outs
        SELECT a.subscriber_id, a.channel, 'opt_out', $now, 'provider_' || o.error_code,
               'provider:' || a.action_id
        FROM send_outcome o JOIN care_actions a USING (action_id)
        WHERE o.opted_out AND {found.rows("a")}
        ON CONFLICT DO NOTHING""",
        {"now": now, "since": found.since},
    )
    con.unregister("send_outcome")
    opted_out = {r.action_id for r in results if r.opted_out}
    retried = {r.action_id for r in results if r.retryable}
    for action_id, channel, status, error_code in rows:
        if status == "sent":
            figures.sent[channel] += 1
        elif status == "failed":
            figures.failed[error_code or "unknown"] += 1
            figures.opted_out_at_provider += action_id in opted_out
        elif status == "sending":
            figures.in_flight += 1
        elif status == "queued" and action_id in retried:
            figures.retry_scheduled += 1


def _outcome_frame(
    messages: list[OutboundMessage],
    results: list[SendResult],
    now: datetime,
    retry: RetryPolicy,
    attempts: dict[str, int],
) -> pl.DataFrame:
    def retry_at(result: SendResult) -> datetime | None:
        tries = attempts[result.action_id]
        if not result.retryable or retry.gives_up(tries):
            return None
        return retry.next_attempt(tries, now, result.retry_after)

    def error_code(result: SendResult) -> str | None:
        exhausted = result.retryable and retry.gives_up(attempts[result.action_id])
        return "retries_exhausted" if exhausted else result.error_code

    return pl.DataFrame(
        {
            "action_id": [r.action_id for r in results],
            "provider_id": [r.provider_id for r in results],
            "error_code": [error_code(r) for r in results],
            "error": [r.error for r in results],
            "ok": [r.ok for r in results],
            "opted_out": [r.opted_out for r in results],
            "unconfirmed": [r.unconfirmed for r in results],
            "not_attempted": [r.not_attempted for r in results],
            "retry_at": [retry_at(r) for r in results],
            "sender": [r.sender for r in results],
            "sent_at": [m.send_at for m in messages],
        },
        schema_overrides={
            "provider_id": pl.String,
            "error_code": pl.String,
            "error": pl.String,
            "sender": pl.String,
            "retry_at": pl.Datetime("us", "UTC"),
        },
    )


SETTLE_SQL = """
UPDATE care_actions a SET
    status = CASE s.verdict WHEN 'sent' THEN 'sent' WHEN 'requeue' THEN 'queued'
                            ELSE 'unconfirmed' END,
    provider_id = coalesce(s.provider_id, a.provider_id),
    sent_at = CASE WHEN s.verdict = 'sent' THEN a.claimed_at END,
    sender = coalesce(s.sender, a.sender),
    error = CASE WHEN s.verdict = 'unconfirmed'
                 THEN 'no word from the provider since it was claimed: review by hand' END,
    updated_at = ?
FROM settled s
WHERE a.action_id = s.action_id AND s.verdict <> 'wait'
"""


def reconcile(held: Held, provider: Provider, now: datetime, figures: DispatchFigures) -> None:
    """Settle actions a crash (or a timeout) left ``sending``: ask the provider, never resend
    blindly. The provider decides what its evidence proves (see Provider.settle)."""
    rows = query_frame(
        held.con,
        "SELECT action_id, idempotency_key, channel, recipient, subject, body, locale, "
        "claimed_at AS scheduled_at FROM care_actions WHERE status = 'sending'",
    )
    if rows.is_empty():
        return
    # send_at carries the claim time (the query names it scheduled_at): a provider looks for
    # each send from that moment on.
    messages = [_message(row, now, simulated=True) for row in rows.iter_rows(named=True)]
    with held.released():
        settled = provider.settle(messages, now)
    frame = pl.DataFrame(
        {
            "action_id": [s.action_id for s in settled],
            "verdict": [s.verdict for s in settled],
            "provider_id": [s.provider_id for s in settled],
            "sender": [s.sender for s in settled],
        },
        schema_overrides={"provider_id": pl.String, "sender": pl.String},
    )
    con = held.con
    register_frame(con, "settled", frame)
    con.execute(SETTLE_SQL, [now])
    con.unregister("settled")
    verdicts = Counter(s.verdict for s in settled)
    figures.reconciled_sent += verdicts["sent"]
    figures.reconciled_requeued += verdicts["requeue"]
    figures.reconciled_waiting += verdicts["wait"]
    figures.unconfirmed += verdicts["unconfirmed"]
