"""Step 5a: send the outbox through the provider, in batches, each action at most once.

Order of work per batch, chosen so that a crash at any point loses nothing and repeats nothing:
claim (queued -> sending, committed), send, record (sending -> sent/failed/queued). A run first
settles any action still ``sending`` with the provider before sending anything new. A local
provider that drops a repeated idempotency key itself (the sandbox) needs no claim: its batch
is screened, sent and recorded in one transaction, and a crash before the commit leaves the
batch queued, its next send the same send.

Batches go in the order the outbox was written (scheduled time, then row): each batch's
updates then touch a few of DuckDB's row groups, not a scattering of every open one, whose
update chains would lengthen with every batch.

The standard is applied at the moment of sending: once a run over the whole open outbox
(opt-outs, send windows, expiry), then before each batch again for that batch's candidates only,
after the inbox's news (an opt-out that arrived a moment ago) is brought in.

What is due is read once a pass (``Due``): one read of the open part of the outbox (``Open``),
never of the settled history. Each batch then takes the next candidates from it by position,
and every statement of the batch (its standard, the claim, the record) names them by key,
which DuckDB looks up in the outbox's index: a batch costs about the same whatever the outbox
holds, a year of sends behind it or a day of 100,000 actions before it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from functools import lru_cache
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from campaigns.channels.base import HELD_BACK, OutboundMessage, Provider, SendResult, StopWatch
from campaigns.retry import RetryPolicy
from core.progress import tracked
from warehouse.db import (
    Held,
    as_held,
    looked_up,
    looking_up,
    query_typed_frame,
    register_frame,
    transaction,
)

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
    sending_since: datetime | None = None  # the oldest action left sending (a crash, a timeout)
    outbox_rows: int | None = None  # the outbox's rows when it was found (None: not counted)

    @classmethod
    def find(cls, con: duckdb.DuckDBPyConnection) -> Open | None:
        """None when nothing is open. This reads the outbox's statuses whole (at a year of 10
        million subscribers, 0.3-1 s): once a run, for both what is open and what a crash
        left sending (reconcile); at its end only if actions were added (``again``)."""
        counted = _outbox_rows(con)  # first: a row added after it is looked for again
        row = con.execute(
            "SELECT min(created_at), min(created_at) FILTER (status = 'sending') "
            "FROM care_actions WHERE status IN ('queued', 'sending')"
        ).fetchone()
        return cls(row[0], row[1], counted) if row and row[0] is not None else None

    def again(self, con: duckdb.DuckDBPyConnection) -> Open:
        """What is open now: this, with an earlier ``since`` if an action added since it was
        found is older (a plan given an earlier moment while the run let the warehouse go).
        An action opens only when it is added: no status goes back to queued or sending once
        settled (a retry or a requeue goes from sending, which was open already; a provider's
        event only moves an action on, and never opens one it was not handed, by
        feedback.statuses.RANK). So with the outbox's rows as they were, nothing can be open
        before ``since``, and the statuses are not read again."""
        counted = _outbox_rows(con)
        if counted == self.outbox_rows:
            return self
        now_open = Open.find(con)
        since = min(self.since, now_open.since) if now_open else self.since
        return replace(self, since=since, outbox_rows=counted)

    def rows(self, alias: str = "") -> str:
        """The predicate, for a statement that binds ``$since``."""
        prefix = f"{alias}." if alias else ""
        return f"{prefix}created_at >= $since"


def on_candidates(condition: str) -> str:
    """The predicate of a batch's statement on ``care_actions a``, joined to the batch's
    candidates ``c`` (``dispatch_candidates``), for rows that meet ``condition``: looked up
    by key (``warehouse.db.looked_up``), not scanned."""
    return looked_up("action_id", condition, by="c")


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
    stop_watch: StopWatch | None = None,
) -> DispatchFigures:
    """Send every queued action due by now. With ``simulated`` each goes at its due time.
    ``refresh`` brings the inbox's news (opt-outs above all) in before each batch, and
    ``stop_watch`` tells the provider, right before each message leaves, whether its
    recipient asked us to stop since (with the window and expiry, its last look: a batch at a
    sender's rate can take many minutes). Given a ``Held`` warehouse, the run lets it go while
    it waits on the provider: a batch is claimed (committed) before, and recorded after, so
    others take their turns meanwhile."""
    held = as_held(warehouse)
    held_back: set[str] = set()  # kept queued by their last look: for the next run's screen
    pace = Pace(now, None if simulated else clock, sleep)
    provider.watch(stop_watch, pace.current)
    retry = retry or RetryPolicy()
    figures = DispatchFigures()
    # Found before the news and the reconciling: neither opens an older action, and what is
    # planned meanwhile is looked for before the run ends.
    found = Open.find(held.con)
    if found and found.sending_since:
        reconcile(held, provider, pace.current(), figures, found.sending_since)
    _stop_if_halted(provider, figures)
    size = min(batch_size, provider.max_batch)
    if refresh:
        refresh()
    if found is None:
        return figures
    live = pace.clock is not None
    apply_standard(held.con, pace.current(), simulated, figures, found, live=live)
    due = Due.none()
    with tracked("sending", _due(held.con, pace.current(), found)) as advance:
        while True:
            if refresh:
                refresh()
            at = pace.current()  # after the news: what was collected has happened by now
            if due.done:  # a new pass: what is due by now, retries and later plans included
                due = Due.find(held.con, at, simulated, found).without(held_back)
            if due.done:
                again = found.again(held.con)
                if again.since < found.since:  # planned meanwhile, as of earlier
                    found = again
                    continue
                found = again
                wait = _retry_wait(held.con, at, found) if pace.clock else None
                if wait is None:
                    break
                with held.released():
                    pace.sleep(wait)
                continue
            batch = Batch(due.take(size), at, simulated, live)
            if provider.idempotent and not provider.remote:
                results = batch.send_in_transaction(held.con, provider, figures, retry)
            else:
                results = batch.send_claimed(held, provider, figures, retry)
            held_back.update(r.action_id for r in results if r.error_code == HELD_BACK)
            advance(len(results))  # none when the news stopped every candidate
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


def _outbox_rows(con: duckdb.DuckDBPyConnection) -> int:
    """The outbox's rows: DuckDB reads no column for it (from its stored row counts where no
    change is pending, else by the rows' ids). Rows are only ever added while a run goes on:
    removing some is a backfill's, done with no run going."""
    row = con.execute("SELECT count(*) FROM care_actions").fetchone()
    return int(row[0]) if row else 0


def _count(result: duckdb.DuckDBPyConnection) -> int:
    """The rows an UPDATE or INSERT changed. Counted, not RETURNING: DuckDB's RETURNING on an
    update by index lookup costs about half a millisecond a row."""
    row = result.fetchone()
    return int(row[0]) if row else 0


def apply_standard(
    con: duckdb.DuckDBPyConnection,
    at: datetime,
    simulated: bool,
    figures: DispatchFigures,
    found: Open = EVERYTHING,
    live: bool = False,
) -> None:
    """The standard at send time over the open outbox: fresh opt-outs, send windows, expiry.
    A batch applies the same again to its own candidates (``screen``). A live run heeds
    every opt-out collected, whatever time its host gave it (a service's clock may run a
    second ahead); a simulated or fixed-time run, those up to its moment."""
    until = None if live else at
    figures.suppressed_at_send += suppress_opted_out(con, at, found, until)
    # Expired first: one whose window opens again only after its expiry is expired, not
    # deferred as well (the batch screen decides in the same order).
    figures.expired += expire(con, at, simulated, found)
    figures.deferred_to_window += defer_outside_window(con, at, found, simulated)


# The standard's rules, each written once, on an action ``a`` (the outbox, or a batch's
# candidates, which carry the same columns) at moment ``$now``.
OPTED_OUT_BY = "(CAST($until AS TIMESTAMPTZ) IS NULL OR o.occurred_at <= $until)"
# The customer's local time of day, as TIME, at moment {at}.
LOCAL_TIME = "CAST(timezone(a.timezone, {at}) AS TIME)"
IN_WINDOW = (
    "(a.window_start IS NULL OR a.timezone IS NULL OR "
    f"({LOCAL_TIME} >= a.window_start AND {LOCAL_TIME} < a.window_end))"
)
# Due now but outside the customer's window (SMS and calls) when sent at {at} (now; in a
# simulated run, its scheduled time): it waits for the window's next opening after {at}.
OUTSIDE_WINDOW_AT = "(a.scheduled_at <= $now AND NOT {in_window})"
NEXT_OPENING_AT = """timezone(a.timezone,
    CASE WHEN {local} < a.window_start
         THEN CAST(timezone(a.timezone, {at}) AS DATE) + a.window_start
         ELSE CAST(timezone(a.timezone, {at}) AS DATE) + 1 + a.window_start END)"""


def _outside_window(at: str) -> str:
    return OUTSIDE_WINDOW_AT.format(in_window=IN_WINDOW.format(at=at))


def _next_opening(at: str) -> str:
    return NEXT_OPENING_AT.format(local=LOCAL_TIME.format(at=at), at=at)


OUTSIDE_WINDOW = _outside_window("$now")
NEXT_OPENING = _next_opening("$now")
# When an action can go out: at its window's next opening if it is due outside it.
CAN_GO_AT = "CASE WHEN {outside} THEN {opening} ELSE a.scheduled_at END"
# Expired when it cannot go out before ``expires_at``: sent at {send_at}, or now if later (a
# simulated run sends each at its scheduled time, so passes {send_at} alone as {send_time}).
EXPIRED = "(a.expires_at IS NOT NULL AND a.expires_at <= {send_time})"
OPTED_OUT_SET = "status = 'suppressed', suppression_reason = 'opted_out', updated_at = $now"
EXPIRE_SET = """status = 'expired', suppression_reason = 'expired',
    error = 'expired at ' || strftime(a.expires_at, '%Y-%m-%d %H:%M UTC')
            || ' before it could be sent',
    updated_at = $now"""


def _send_time(simulated: bool, send_at: str = "a.scheduled_at") -> str:
    return send_at if simulated else f"greatest({send_at}, $now)"


def suppress_opted_out(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    found: Open = EVERYTHING,
    until: datetime | None = None,
) -> int:
    """Opt-out is absolute: one that arrived after planning still stops the send (one made
    by ``until``, when given), the subscriber's, or for a text or a call the number's."""
    params = {"now": now, "until": until, "since": found.since}
    return sum(
        _count(
            con.execute(
                f"""UPDATE care_actions a SET {OPTED_OUT_SET} FROM {opt_outs} o
                WHERE a.status = 'queued' AND {matched} AND {OPTED_OUT_BY}
                  AND {found.rows("a")}""",
                params,
            )
        )
        for opt_outs, matched in _OPTED_OUT_ACTIONS
    )


# Whose opt-outs stop a queued action: its subscriber's on its channel, and its number's made
# since it was planned (the screen's rule, below).
_OPTED_OUT_ACTIONS = (
    ("active_opt_outs", "o.subscriber_id = a.subscriber_id AND o.channel = a.channel"),
    (
        "active_phone_opt_outs",
        "a.channel IN ('sms', 'voice') AND o.phone = a.recipient AND o.occurred_at > a.created_at",
    ),
)


def expire(
    con: duckdb.DuckDBPyConnection, now: datetime, simulated: bool, found: Open = EVERYTHING
) -> int:
    """A contact that can no longer go out before its expiry (when due, or at its window's
    next opening if it is due outside it) is archived as ``expired``: a birthday greeting is
    never sent the day after."""
    at = _window_moment(simulated)
    send_at = CAN_GO_AT.format(outside=_outside_window(at), opening=_next_opening(at))
    expired = EXPIRED.format(send_time=_send_time(simulated, send_at))
    return _count(
        con.execute(
            f"""UPDATE care_actions a SET {EXPIRE_SET}
            WHERE {found.rows("a")} AND a.status = 'queued' AND {expired}""",
            {"now": now, "since": found.since},
        )
    )


def _window_moment(simulated: bool) -> str:
    """When an action's window is judged: now, or in a simulated run its scheduled time."""
    return "a.scheduled_at" if simulated else "$now"


def defer_outside_window(
    con: duckdb.DuckDBPyConnection, now: datetime, found: Open = EVERYTHING, simulated: bool = False
) -> int:
    """SMS and calls due now but outside the customer's window wait for its next opening. A
    simulated run sends each at its scheduled time, so an action scheduled outside its window
    (a follow-up queued at 08:00) moves to the opening after that time, which may still fall
    within the run."""
    at = _window_moment(simulated)
    return _count(
        con.execute(
            f"""UPDATE care_actions a SET updated_at = $now, scheduled_at = {_next_opening(at)}
            WHERE {found.rows("a")} AND a.status = 'queued' AND {_outside_window(at)}""",
            {"now": now, "since": found.since},
        )
    )


# What a batch needs: to check the standard again (the send window, the expiry) and to send.
DUE_COLUMNS = """a.action_id, a.idempotency_key, a.subscriber_id, a.channel, a.recipient,
    a.subject, a.body, a.locale, a.scheduled_at, a.attempts, a.timezone, a.window_start,
    a.window_end, a.expires_at, a.created_at"""
UTC_TIME = pl.Datetime("us", "UTC")
DUE_SCHEMA = pl.Schema(
    {
        **dict.fromkeys(
            ("action_id", "idempotency_key", "subscriber_id", "channel", "recipient", "subject"),
            pl.String(),
        ),
        **dict.fromkeys(("body", "locale", "timezone"), pl.String()),
        "scheduled_at": UTC_TIME,
        "attempts": pl.Int32(),
        "window_start": pl.Time(),
        "window_end": pl.Time(),
        "expires_at": UTC_TIME,
        "created_at": UTC_TIME,
    }
)
# At most this many due actions are read at once (a reading is one scan of the open outbox):
# bounded memory, and the scan is shared by five batches of 10,000 (the sandbox's).
DUE_READ = 50_000


@dataclass
class Due:
    """What the next batches of a run send: the queued actions due and inside their window
    at one moment, in sending order, read at once with everything a batch needs (one scan
    of the open outbox). Batches are taken from it by position; what falls due meanwhile (a
    retry, a later plan) is found by the next reading. An action's content, window and expiry
    do not change while it is queued; its status and opt-outs may, and each batch checks them
    again (``screen``, and the claim takes only actions still queued)."""

    rows: pl.DataFrame
    taken: int = 0

    @classmethod
    def none(cls) -> Due:
        return cls(pl.DataFrame(schema=DUE_SCHEMA))

    @classmethod
    def find(
        cls, con: duckdb.DuckDBPyConnection, now: datetime, simulated: bool, found: Open
    ) -> Due:
        """A simulated run sends each at its scheduled time, so checks its window then."""
        at = "a.scheduled_at" if simulated else "$now"
        rows = query_typed_frame(
            con,
            f"""
            SELECT {DUE_COLUMNS} FROM care_actions a
            WHERE {found.rows("a")} AND a.status = 'queued' AND a.scheduled_at <= $now
              AND {IN_WINDOW.format(at=at)}
            ORDER BY a.scheduled_at, a.rowid LIMIT {DUE_READ}""",
            {"now": now, "since": found.since},
            DUE_SCHEMA,
        )
        return cls(rows)

    def without(self, action_ids: set[str]) -> Due:
        """Leave out actions this run has already let go of (see ``Provider.last_look``)."""
        if not action_ids:
            return self
        return Due(self.rows.filter(~pl.col("action_id").is_in(list(action_ids))))

    @property
    def done(self) -> bool:
        return self.taken >= self.rows.height

    def take(self, size: int) -> pl.DataFrame:
        """The next ``size`` candidates."""
        batch = self.rows.slice(self.taken, size)
        self.taken += batch.height
        return batch


@dataclass(frozen=True)
class Batch:
    """One batch of a run: its candidates (from ``Due``) and the moment it goes."""

    candidates: pl.DataFrame
    at: datetime
    simulated: bool
    live: bool

    def send_claimed(
        self, held: Held, provider: Provider, figures: DispatchFigures, retry: RetryPolicy
    ) -> list[SendResult]:
        """Claim (committed), send (letting the warehouse go while a remote provider
        answers), record: a crash between send and record leaves the actions ``sending``,
        for the next run to settle with the provider."""
        size = self.candidates.height
        with looking_up(held.con, size):
            sends = take_batch(
                held.con, self.candidates, self.at, self.simulated, figures, self.live
            )
        if sends.is_empty():
            return []
        messages = _messages(sends, self.at, self.simulated)
        with held.released() if provider.remote else nullcontext():
            results = provider.send(messages)
        with looking_up(held.con, size):
            record(held.con, sends, messages, results, self.at, figures, retry)
        return results

    def send_in_transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        provider: Provider,
        figures: DispatchFigures,
        retry: RetryPolicy,
    ) -> list[SendResult]:
        """Screen, send and record in one transaction, with no claim, for a local provider
        that drops a repeated idempotency key: a crash before the commit leaves the batch
        queued, and its next send repeats nothing. The warehouse is held throughout."""
        with looking_up(con, self.candidates.height):
            stage_candidates(con, self.candidates)
            with transaction(con):
                screen(con, self.at, self.simulated, None if self.live else self.at)
                settle_screened(con, self.at, figures)
                sends = let_through(con, self.candidates).with_columns(
                    pl.col("attempts") + 1  # as claimed when recorded
                )
                if sends.is_empty():
                    return []
                messages = _messages(sends, self.at, self.simulated)
                results = provider.send(messages)
                outcome = _outcome_frame(sends, messages, results, self.at, retry)
                written = _write_outcome(con, outcome, self.at, claiming=True)
        _count_outcomes(written, figures)
        return results


def stage_candidates(con: duckdb.DuckDBPyConnection, candidates: pl.DataFrame) -> None:
    """``dispatch_candidates``: a batch's candidates as a table. A table, not the frame: only
    a table's keys are looked up in the outbox's index. Its times back in the outbox's type
    (polars keeps nanoseconds)."""
    register_frame(con, "candidate_frame", candidates)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dispatch_candidates AS SELECT * REPLACE ("
        "CAST(window_start AS TIME) AS window_start, CAST(window_end AS TIME) AS window_end) "
        "FROM candidate_frame"
    )
    con.unregister("candidate_frame")


def take_batch(
    con: duckdb.DuckDBPyConnection,
    candidates: pl.DataFrame,
    at: datetime,
    simulated: bool,
    figures: DispatchFigures,
    live: bool,
) -> pl.DataFrame:
    """The candidates that pass the standard at ``at``, claimed (committed) before anything
    is sent; the others suppressed, deferred or expired. In one transaction."""
    stage_candidates(con, candidates)
    with transaction(con):
        screen(con, at, simulated, None if live else at)
        settle_screened(con, at, figures)
        claimed = claim_screened(con, at)
    sends = let_through(con, candidates)
    if claimed != sends.height:  # an action moved meanwhile (an event for a retry, say)
        sends = claimed_now(con, sends, "dispatch_candidates", at, "a.status = 'sending' AND ")
    return sends.with_columns(pl.col("attempts") + 1)  # as claimed


def let_through(con: duckdb.DuckDBPyConnection, candidates: pl.DataFrame) -> pl.DataFrame:
    """The candidates the screen's verdict (``dispatch_verdicts``) lets go."""
    sends = con.execute("SELECT action_id FROM dispatch_verdicts WHERE verdict = 'send'")
    return candidates.filter(pl.col("action_id").is_in([r[0] for r in sends.fetchall()]))


def claimed_now(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, table: str, at: datetime, also: str = ""
) -> pl.DataFrame:
    """The ``rows`` (a batch, staged as ``table``) whose actions this run claimed at ``at``
    (and that meet ``also``, SQL on the outbox's ``a``, ending in AND)."""
    mine = con.execute(
        f"SELECT c.action_id FROM care_actions a, {table} c "
        f"WHERE {on_candidates(f'{also}a.claimed_at = $now')}",
        {"now": at},
    ).fetchall()
    return rows.filter(pl.col("action_id").is_in([row[0] for row in mine]))


def screen(
    con: duckdb.DuckDBPyConnection, at: datetime, simulated: bool, until: datetime | None
) -> None:
    """``dispatch_verdicts``: the standard's word on each candidate at ``at``, from the
    candidates and the opt-outs alone (the outbox is not read): opted_out, expired, deferred
    (with its next opening) or send. The one place a check right before sending goes."""
    who = con.execute("SELECT DISTINCT subscriber_id FROM dispatch_candidates").fetchall()
    numbers = con.execute(
        "SELECT DISTINCT recipient FROM dispatch_candidates WHERE channel IN ('sms', 'voice')"
    ).fetchall()
    outside = "false" if simulated else OUTSIDE_WINDOW
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE dispatch_verdicts AS
        WITH s AS (
            SELECT a.action_id, a.expires_at,
                o.subscriber_id IS NOT NULL OR p.phone IS NOT NULL AS opted,
                {outside} AS outside,
                {CAN_GO_AT.format(outside=outside, opening=NEXT_OPENING)} AS send_at
            FROM dispatch_candidates a
            -- Their customers only, as a list: a filter on the view's partition key goes
            -- below its window, which then ranks their opt-outs, not every one ever made.
            LEFT JOIN (SELECT DISTINCT o.subscriber_id, o.channel FROM active_opt_outs o
                       WHERE list_contains($who, o.subscriber_id) AND {OPTED_OUT_BY}) o
              ON o.subscriber_id = a.subscriber_id AND o.channel = a.channel
            -- the number's own opt-out, whoever's record it was made on (migration 0032),
            -- since the action was planned: the plan heeded those before it, or the record's
            -- consent came after them (a number given to a new customer)
            LEFT JOIN (SELECT o.phone, o.occurred_at FROM active_phone_opt_outs o
                       WHERE list_contains($numbers, o.phone) AND {OPTED_OUT_BY}) p
              ON p.phone = a.recipient AND a.channel IN ('sms', 'voice')
             AND p.occurred_at > a.created_at)
        SELECT action_id,
            CASE WHEN opted THEN 'opted_out'
                 WHEN {EXPIRED.format(send_time=_send_time(simulated, "send_at"))} THEN 'expired'
                 WHEN outside THEN 'deferred' ELSE 'send' END AS verdict,
            CASE WHEN outside THEN send_at END AS next_at
        FROM s a""",
        {
            "who": [row[0] for row in who],
            "numbers": [row[0] for row in numbers],
            "now": at,
            "until": until,
        },
    )


# What each verdict other than send does to an action still queued.
VERDICT_SET = {
    "opted_out": OPTED_OUT_SET,
    "expired": EXPIRE_SET,
    "deferred": "scheduled_at = c.next_at, updated_at = $now",
}


def settle_screened(con: duckdb.DuckDBPyConnection, at: datetime, figures: DispatchFigures) -> None:
    """Write the verdicts other than send, each kind only if the screen gave it (mostly
    none is given): one statement a kind, naming its actions by key."""
    given = dict(
        con.execute(
            "SELECT verdict, count(*) FROM dispatch_verdicts WHERE verdict <> 'send' GROUP BY 1"
        ).fetchall()
    )
    written = {
        verdict: _count(
            con.execute(
                f"""UPDATE care_actions a SET {VERDICT_SET[verdict]}
                FROM (SELECT * FROM dispatch_verdicts WHERE verdict = $verdict) c
                WHERE {on_candidates("a.status = 'queued'")}""",
                {"now": at, "verdict": verdict},
            )
        )
        for verdict in VERDICT_SET
        if given.get(verdict)
    }
    figures.suppressed_at_send += written.get("opted_out", 0)
    figures.expired += written.get("expired", 0)
    figures.deferred_to_window += written.get("deferred", 0)


def claim_screened(con: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Mark the candidates the screen let through, and still queued, ``sending``; how many."""
    return _count(
        con.execute(
            f"""
            UPDATE care_actions a SET status = 'sending', claimed_at = $now,
                attempts = a.attempts + 1, updated_at = $now
            FROM (SELECT action_id FROM dispatch_verdicts WHERE verdict = 'send') c
            WHERE {on_candidates("a.status = 'queued'")}""",
            {"now": now},
        )
    )


def claim(
    con: duckdb.DuckDBPyConnection, now: datetime, size: int, simulated: bool = False
) -> pl.DataFrame:
    """Mark the next due batch ``sending``, as a run does (the standard not applied)."""
    candidates = Due.find(con, now, simulated, EVERYTHING).take(size)
    register_frame(con, "candidate_frame", candidates.select("action_id"))
    con.execute(
        f"""UPDATE care_actions a SET status = 'sending', claimed_at = $now,
            attempts = a.attempts + 1, updated_at = $now
        FROM candidate_frame c WHERE {on_candidates("a.status = 'queued'")}""",
        {"now": now},
    )
    con.unregister("candidate_frame")
    return candidates.with_columns(pl.col("attempts") + 1)


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


def _messages(rows: pl.DataFrame, now: datetime, simulated: bool) -> list[OutboundMessage]:
    """The batch's messages, read column by column (a row's dict costs more than its message)."""
    columns = (rows[name].to_list() for name in MESSAGE_COLUMNS)
    return [
        _message(*values, now=now, simulated=simulated) for values in zip(*columns, strict=True)
    ]


def _message(  # one argument per column of MESSAGE_COLUMNS
    action_id: str,
    key: str,
    channel: str,
    recipient: str | None,
    subject: str | None,
    body: str,
    locale: str,
    scheduled: datetime,
    expires: datetime | None,
    zone: str | None,
    closes: time_of_day | None,
    *,
    now: datetime,
    simulated: bool,
) -> OutboundMessage:
    return OutboundMessage(
        action_id=action_id,
        idempotency_key=key,
        channel=channel,
        recipient=recipient or "",
        subject=subject,
        body=body,
        locale=locale,
        send_at=scheduled if simulated else now,
        leave_by=None if simulated else _leave_by(expires, zone, closes, now),
    )


MESSAGE_COLUMNS = (
    "action_id",
    "idempotency_key",
    "channel",
    "recipient",
    "subject",
    "body",
    "locale",
    "scheduled_at",
    "expires_at",
    "timezone",
    "window_end",
)


def _leave_by(
    expires: datetime | None, zone: str | None, closes: time_of_day | None, now: datetime
) -> datetime | None:
    """The moment a message claimed at ``now`` may no longer leave: its expiry, or the close
    of the customer's send window that ``now`` is in, whichever comes first."""
    ends = [expires, _window_close(zone, closes, now) if zone and closes else None]
    return min((end for end in ends if end is not None), default=None)


@lru_cache(maxsize=1024)
def _window_close(zone: str, closes: time_of_day, now: datetime) -> datetime:
    """Today's close, in ``zone``, of a window closing at ``closes``: a batch has few zones."""
    local = now.astimezone(ZoneInfo(zone))
    return datetime.combine(local.date(), closes, ZoneInfo(zone)).astimezone(UTC)


# One statement writes a batch's outcomes, each looked up by key (see on_candidates).
# ``$claiming``: the batch was not claimed before it was sent (``Batch.send_in_transaction``),
# so its claim is written here, to actions still queued.
RECORD_SQL = """
UPDATE care_actions a SET
    status = o.status,
    attempts = a.attempts + CASE WHEN $claiming THEN 1 ELSE 0 END
        - CASE WHEN o.not_attempted THEN 1 ELSE 0 END,
    claimed_at = CASE WHEN $claiming THEN $now ELSE a.claimed_at END,
    scheduled_at = coalesce(o.retry_at, a.scheduled_at),
    provider_id = CASE WHEN o.not_attempted THEN a.provider_id ELSE o.provider_id END,
    error_code = CASE WHEN o.not_attempted THEN a.error_code ELSE o.error_code END,
    error = CASE WHEN o.not_attempted THEN a.error ELSE o.error END,
    sent_at = CASE WHEN o.status = 'sent' THEN o.sent_at END,
    updated_at = $now,
    sender = coalesce(o.sender, a.sender)
FROM send_outcome o
WHERE a.action_id = o.action_id
  AND CASE WHEN o.action_id IS NOT NULL THEN NOT $claiming OR a.status = 'queued' END"""

# A recipient the provider says opted out is recorded as an opt-out on that channel, and
# for a text or a call, of the number (migration 0032).
PROVIDER_OPT_OUTS_SQL = (
    """INSERT INTO opt_outs
    SELECT subscriber_id, channel, 'opt_out', $now, 'provider_' || error_code,
           'provider:' || action_id
    FROM send_outcome WHERE opted_out
    ON CONFLICT (evidence_key, channel) DO NOTHING""",
    """INSERT INTO phone_consent
    SELECT recipient, 'opt_out', $now, 'provider:' || action_id FROM send_outcome
    WHERE opted_out AND channel IN ('sms', 'voice') AND recipient IS NOT NULL
    ON CONFLICT DO NOTHING""",
)


def record(
    con: duckdb.DuckDBPyConnection,
    batch: pl.DataFrame,
    messages: list[OutboundMessage],
    results: list[SendResult],
    now: datetime,
    figures: DispatchFigures,
    retry: RetryPolicy,
) -> None:
    """Write each result: sent, failed, back to the queue (now or at its retry time), or
    (unconfirmed) left sending; in one transaction. The figures count what was written."""
    outcome = _outcome_frame(batch, messages, results, now, retry)
    with transaction(con):
        _write_outcome(con, outcome, now, claiming=False)
    _count_outcomes(outcome, figures)


def _write_outcome(
    con: duckdb.DuckDBPyConnection, outcome: pl.DataFrame, now: datetime, claiming: bool
) -> pl.DataFrame:
    """The statements of ``record``, inside the caller's transaction; the outcomes written."""
    register_frame(con, "outcome_frame", outcome)
    # A table: only a table's keys are looked up in the index.
    con.execute("CREATE OR REPLACE TEMP TABLE send_outcome AS SELECT * FROM outcome_frame")
    con.unregister("outcome_frame")
    written = _count(con.execute(RECORD_SQL, {"now": now, "claiming": claiming}))
    if outcome["opted_out"].any():
        for statement in PROVIDER_OPT_OUTS_SQL:
            con.execute(statement, {"now": now})
    if written == outcome.height:
        return outcome
    if not claiming:  # the run holds the sending turn: nobody else moves what it claimed
        raise RuntimeError(f"{outcome.height} sends to record, {written} actions found")
    # Unclaimed, an action may have moved since it was read (a receipt collected between
    # batches settled it): the provider took it again as the same send, nothing to record.
    return claimed_now(con, outcome, "send_outcome", now)


def _count_outcomes(outcome: pl.DataFrame, figures: DispatchFigures) -> None:
    """Add a batch's written outcomes to the run's figures, by kind."""
    counts = outcome.group_by(
        "status", "channel", "error_code", "opted_out", retried=pl.col("retry_at").is_not_null()
    ).len()
    for status, channel, error_code, opted_out, retried, n in counts.iter_rows():
        if status == "sent":
            figures.sent[channel] += n
        elif status == "failed":
            figures.failed[error_code or "unknown"] += n
            figures.opted_out_at_provider += n if opted_out else 0
        elif status == "sending":
            figures.in_flight += n
        elif status == "queued" and retried:
            figures.retry_scheduled += n


def _status(result: SendResult, retry_at: datetime | None) -> str:
    """Where a send leaves its action: sent; left sending (it may have gone: reconciled,
    never resent blindly); queued (not attempted, or retried later); failed."""
    if result.ok:
        return "sent"
    if result.unconfirmed:
        return "sending"
    if result.not_attempted or retry_at is not None:
        return "queued"
    return "failed"


def _outcome_frame(
    batch: pl.DataFrame,
    messages: list[OutboundMessage],
    results: list[SendResult],
    now: datetime,
    retry: RetryPolicy,
) -> pl.DataFrame:
    attempts = dict(zip(batch["action_id"], batch["attempts"], strict=True))
    who = dict(zip(batch["action_id"], batch["subscriber_id"], strict=True))

    def retry_at(result: SendResult) -> datetime | None:
        tries = attempts[result.action_id]
        if not result.retryable or retry.gives_up(tries):
            return None
        return retry.next_attempt(tries, now, result.retry_after)

    def error_code(result: SendResult) -> str | None:
        exhausted = result.retryable and retry.gives_up(attempts[result.action_id])
        return "retries_exhausted" if exhausted else result.error_code

    retries = [retry_at(r) for r in results]
    return pl.DataFrame(
        {
            "action_id": [r.action_id for r in results],
            "subscriber_id": [who[r.action_id] for r in results],
            "channel": [m.channel for m in messages],
            "recipient": [m.recipient for m in messages],
            "status": [_status(r, at) for r, at in zip(results, retries, strict=True)],
            "provider_id": [r.provider_id for r in results],
            "error_code": [error_code(r) for r in results],
            "error": [r.error for r in results],
            "opted_out": [r.opted_out for r in results],
            "not_attempted": [r.not_attempted for r in results],
            "retry_at": retries,
            "sender": [r.sender for r in results],
            "sent_at": [r.sent_at or m.send_at for r, m in zip(results, messages, strict=True)],
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


def reconcile(
    held: Held, provider: Provider, now: datetime, figures: DispatchFigures, since: datetime
) -> None:
    """Settle actions a crash (or a timeout) left ``sending``, the oldest created at ``since``:
    ask the provider, never resend blindly. The provider decides what its evidence proves
    (see Provider.settle)."""
    rows = query_typed_frame(
        held.con,
        "SELECT action_id, idempotency_key, channel, recipient, subject, body, locale, "
        "claimed_at AS scheduled_at, expires_at, timezone, window_end FROM care_actions "
        "WHERE status = 'sending' AND created_at >= $since",
        {"since": since},
    )
    if rows.is_empty():
        return
    # send_at carries the claim time (the query names it scheduled_at): a provider looks for
    # each send from that moment on.
    messages = _messages(rows, now, simulated=True)
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
