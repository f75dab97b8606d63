"""Drain the inbox into the warehouse: land raw, parse, attribute, apply opt-outs and statuses.

Each inbox batch is one DuckDB transaction that also moves the watermark, so a crash replays the
batch whole; inbound items are keyed by (kind, provider id), so a replay or a provider retry
counts once (looked for among the items that came within ``REPEAT_HORIZON`` of it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from core.tokens import RATING_LINK_LIFETIME
from feedback.parsing import ParsedReply, parse_digits, parse_reply
from feedback.statuses import NEVER_HANDED_OVER, RANK, normalize
from inbox.inbox import Inbox, InboxItem
from warehouse.db import LOOKUP_KEYS, ingest_mark, looked_up, register_frame, transaction
from warehouse.ratings import record_ratings

WATERMARK = "inbox_last_id:{}"  # per inbox: another inbox's ids mean nothing here
REPLY_KINDS = {"sms": "sms", "ivr": "voice", "email_rating": "email"}


@dataclass
class CollectFigures:
    drained: int = 0
    duplicates: int = 0
    replies: Counter[str] = field(default_factory=Counter)  # by attribution
    intents: Counter[str] = field(default_factory=Counter)
    opt_outs: int = 0
    status_events: int = 0


# Another concern's items in the same inbox (a manager's change to a case): a step it hands in,
# run in each batch's transaction after the replies, so a crash replays it with the batch.
# (For the type checker only: a typing object built at import would keep DuckDB's connection
# type alive past its module's teardown, and DuckDB's bindings report it as a leak at exit.)
if TYPE_CHECKING:
    BatchStep = Callable[[duckdb.DuckDBPyConnection, list[InboxItem]], None]


def drain(
    con: duckdb.DuckDBPyConnection,
    inbox: Inbox,
    *,
    reply_window: timedelta,
    figures: CollectFigures | None = None,
    also: Sequence[BatchStep] = (),
) -> CollectFigures:
    """Drain the inbox: each batch's new items landed, statuses, replies, unsubscribes and the
    steps in ``also`` applied, and the watermark moved, in one transaction."""
    figures = figures or CollectFigures()
    # A page names no more rows than a join looks up by index (warehouse.db.LOOKUP_KEYS).
    for batch in inbox.after(watermark(con, inbox), limit=LOOKUP_KEYS):
        with transaction(con):
            fresh = land(con, batch, figures)
            # Statuses first: an event may settle the send a reply in this batch answers.
            ingest_statuses(con, [i for i in fresh if i.kind == "status"], figures)
            ingest_replies(con, [i for i in fresh if i.kind in REPLY_KINDS], reply_window, figures)
            figures.opt_outs += ingest_unsubscribes(
                con, [i for i in fresh if i.kind == "unsubscribe"]
            )
            for step in also:
                step(con, fresh)
            con.execute(
                "INSERT OR REPLACE INTO ingest_state VALUES (?, ?)",
                [WATERMARK.format(inbox.identity), batch[-1].id],
            )
    return figures


def watermark(con: duckdb.DuckDBPyConnection, inbox: Inbox) -> int:
    """The last id collect took from this inbox (0 for an inbox it has never read: a new
    inbox, or the warehouse moved to PostgreSQL's, is read from its start)."""
    return ingest_mark(con, WATERMARK.format(inbox.identity)) or 0


# How far apart in arrival an item and its repeat can be. The inbox refuses a repeat while
# it holds the first, and holds each item for its retention (7 days or more) after it came,
# so what reaches the warehouse twice is the same item read again (a new inbox read from its
# start, a replayed batch: the same arrival) or a provider's retry of an item the inbox
# already let go, which SendGrid's 72 hours of retries keep within this. A form posted
# again after that lands twice and counts once where it matters: evaluations (looked for
# within EVALUATION_REPEAT_HORIZON, below) and opt-outs keep one row per key.
REPEAT_HORIZON = timedelta(days=3)

# Landed are the batch's items not kept already among those that arrived around the same
# time: the log is in arrival order, so that range is a few of its row groups, whatever the
# history holds (see migration 0027).
LAND_SQL = """
    INSERT INTO inbound_messages
    SELECT dedupe_key, inbox_id, kind, received_at, payload::JSON, now() FROM landing
    WHERE dedupe_key NOT IN (
        SELECT dedupe_key FROM inbound_messages
        WHERE received_at BETWEEN $from AND $to
          AND dedupe_key IN (SELECT dedupe_key FROM landing))
    RETURNING dedupe_key"""


def land(
    con: duckdb.DuckDBPyConnection, batch: list[InboxItem], figures: CollectFigures
) -> list[InboxItem]:
    """Keep every item raw; return those not seen before."""
    keys = [f"{i.kind}:{i.dedupe_key}" for i in batch]
    frame = pl.DataFrame(
        {
            "dedupe_key": keys,
            "inbox_id": [i.id for i in batch],
            "kind": [i.kind for i in batch],
            "received_at": [i.received_at for i in batch],
            "payload": [json.dumps(i.payload, ensure_ascii=False) for i in batch],
        }
    )
    register_frame(con, "landing", frame)
    arrived = [i.received_at for i in batch]
    new_keys = {
        row[0]
        for row in con.execute(
            LAND_SQL, {"from": min(arrived) - REPEAT_HORIZON, "to": max(arrived) + REPEAT_HORIZON}
        ).fetchall()
    }
    con.unregister("landing")
    figures.drained += len(batch)
    figures.duplicates += len(batch) - len(new_keys)
    return [item for item, key in zip(batch, keys, strict=True) if key in new_keys]


def _attributes(item: InboxItem) -> str | None:
    """Per-attribute ratings from the email rating page, as JSON."""
    given = item.payload.get("attributes") if item.kind == "email_rating" else None
    return json.dumps(given) if isinstance(given, dict) and given else None


def _parse(item: InboxItem) -> tuple[ParsedReply, dict[str, object]]:
    payload = item.payload
    if item.kind == "sms":
        return parse_reply(str(payload.get("Body", ""))), {
            "sender": payload.get("From"),
            "receiver": payload.get("To"),
        }
    if item.kind == "ivr":
        return parse_digits(str(payload.get("Digits", ""))), {"action_id": payload["action_id"]}
    score = payload.get("score")
    parsed = (
        ParsedReply("rating", int(score), payload.get("comment") or None)
        if isinstance(score, int) and 1 <= score <= 5
        else ParsedReply("unknown")
    )
    return parsed, {"action_id": payload["action_id"]}


REPLY_SCHEMA = pl.Schema(
    {
        "dedupe_key": pl.String(),
        "channel": pl.String(),
        "sender": pl.String(),
        "receiver": pl.String(),
        "given_action_id": pl.String(),
        "received_at": pl.Datetime("us", "UTC"),
        "intent": pl.String(),
        "score": pl.Int32(),
        "comment": pl.String(),
        "attributes": pl.String(),
    }
)


def _reply_row(item: InboxItem) -> dict[str, object]:
    parsed, ref = _parse(item)
    return {
        "dedupe_key": f"{item.kind}:{item.dedupe_key}",
        "channel": REPLY_KINDS[item.kind],
        "sender": ref.get("sender"),
        "receiver": ref.get("receiver"),
        "given_action_id": ref.get("action_id"),
        "received_at": item.received_at,
        "intent": parsed.intent,
        "score": parsed.score,
        "comment": parsed.comment,
        "attributes": _attributes(item),
    }


# How far apart in arrival a reply and its repeat can be: a provider's retry comes within
# REPEAT_HORIZON, a rating form posted again while its link takes ratings. A repeat is looked
# for among the evaluations that arrived that close to the page's replies, a few days of the
# log whatever the history holds (migration 0031: evaluations have no unique key to ask).
EVALUATION_REPEAT_HORIZON = RATING_LINK_LIFETIME + REPEAT_HORIZON

# The page's evaluations not kept already: one row per dedupe key, its id the key's hash.
EVALUATIONS_SQL = """
INSERT INTO evaluations
SELECT 'ev_' || substr(md5(dedupe_key), 1, 24), dedupe_key, action_id, subscriber_id,
       campaign_id, round, store_id, channel, sender, intent, score, comment,
       attribution, received_at, attributes::JSON
FROM attributed
WHERE dedupe_key NOT IN (
    SELECT dedupe_key FROM evaluations
    WHERE received_at BETWEEN $from AND $to
      AND dedupe_key IN (SELECT dedupe_key FROM attributed))
ORDER BY received_at
RETURNING * EXCLUDE (attributes)"""


def ingest_replies(
    con: duckdb.DuckDBPyConnection,
    items: list[InboxItem],
    reply_window: timedelta,
    figures: CollectFigures,
) -> None:
    """Score and attribute a batch of replies, keep them as evaluations, apply opt-outs."""
    if not items:
        return
    replies = pl.DataFrame([_reply_row(item) for item in items], schema=REPLY_SCHEMA)
    params = {
        "earliest": min(item.received_at for item in items) - reply_window - LATE_LOOKBACK,
        "window": int(reply_window.total_seconds()),
        "lookback": int(LATE_LOOKBACK.total_seconds()),
    }
    register_frame(con, "replies", replies)
    con.execute(ATTRIBUTE_SQL, params)
    con.unregister("replies")
    _consent_from_older_surveys(con, replies, params)
    for attribution, intent, n in con.execute(
        "SELECT attribution, intent, count(*) FROM attributed GROUP BY ALL"
    ).fetchall():
        figures.replies[attribution] += n
        figures.intents[intent] += n
    arrived = [item.received_at for item in items]
    horizon = {
        "from": min(arrived) - EVALUATION_REPEAT_HORIZON,
        "to": max(arrived) + EVALUATION_REPEAT_HORIZON,
    }
    written = con.execute(EVALUATIONS_SQL, horizon).fetch_df()
    # Only what this insert wrote: a reply kept already has its place in the ratings.
    if len(written):
        register_frame(con, "written_evaluations", pl.from_pandas(written))
        record_ratings(con, "written_evaluations")
        con.unregister("written_evaluations")
    figures.opt_outs += _consent_changes(con)


# SMS replies are tied to the latest survey sent to that number (an ASOF join); IVR and email
# carry their action id. Anything outside the reply window is kept as late, never dropped.
# An SMS reply is "late" when it comes after its survey's reply window closed, up to this long
# after; later still it answers no open survey (a reply naming its action, by IVR or a link,
# stays "late"). The bound keeps an SMS reply's search to the surveys of the last weeks
# (sent_at's zone maps skip the rest), not every survey ever sent.
LATE_LOOKBACK = timedelta(days=30)

ATTRIBUTE_SQL = """
CREATE OR REPLACE TEMP TABLE attributed AS
WITH sms_surveys AS (
    -- only the page's numbers' surveys: the ASOF joins below then build on a few rows, not
    -- on every SMS survey of the weeks searched (2.6 s a page at 10 million subscribers)
    SELECT action_id, recipient, sender AS our_number, sent_at FROM care_actions
    WHERE channel = 'sms' AND survey AND sent_at >= $earliest
      AND recipient IN (SELECT sender FROM replies)
), by_sender AS (
    SELECT r.*, s.action_id AS sender_match, s.sent_at AS sender_match_at
    FROM replies r ASOF LEFT JOIN (SELECT * FROM sms_surveys WHERE our_number IS NOT NULL) s
      ON r.sender = s.recipient AND coalesce(r.receiver, '?') = s.our_number
     AND r.received_at >= s.sent_at
), by_recipient AS (
    -- A Messaging Service send has no sender until its status callback says: such a survey
    -- is matched by the customer's number alone.
    SELECT b.*, s.action_id AS recipient_match, s.sent_at AS recipient_match_at
    FROM by_sender b ASOF LEFT JOIN (SELECT * FROM sms_surveys WHERE our_number IS NULL) s
      ON b.sender = s.recipient AND b.received_at >= s.sent_at
), by_number AS (
    SELECT * EXCLUDE (sender_match, sender_match_at, recipient_match, recipient_match_at),
        coalesce(given_action_id, CASE
            WHEN sender_match IS NULL OR recipient_match_at > sender_match_at
            THEN recipient_match ELSE sender_match END) AS candidate
    FROM by_recipient
), senders AS (
    SELECT phone, min(subscriber_id) AS subscriber_id FROM subscribers
    WHERE phone IN (SELECT sender FROM replies) GROUP BY phone
)
SELECT b.dedupe_key, b.channel, b.sender, b.received_at, b.intent, b.score, b.comment,
       b.attributes,
       CASE WHEN attribution = 'matched' THEN a.action_id END AS action_id,
       coalesce(a.subscriber_id, p.subscriber_id) AS subscriber_id,
       a.campaign_id, a.round, a.store_id, attribution,
       -- a text's or a call's number: the one that texted, or the one the answered care
       -- called (an IVR reply names its action, not its caller)
       CASE WHEN b.channel IN ('sms', 'voice') THEN coalesce(b.sender, a.recipient) END
           AS number
FROM (
    SELECT b.*, a.action_id AS found_action,
        CASE WHEN a.action_id IS NULL AND b.channel = 'sms' AND p.subscriber_id IS NULL
                 THEN 'unknown_sender'
             WHEN a.action_id IS NULL OR a.sent_at IS NULL THEN 'no_open_survey'
             -- a key pressed on a call that asked nothing (a greeting, a household's
             -- second member) is no rating of it
             WHEN b.intent = 'rating' AND NOT a.survey THEN 'no_open_survey'
             WHEN b.given_action_id IS NULL
                  AND epoch(b.received_at) - epoch(a.sent_at) > $window + $lookback
                 THEN 'no_open_survey'
             WHEN epoch(b.received_at) - epoch(a.sent_at) > $window THEN 'late'
             ELSE 'matched' END AS attribution
    FROM by_number b
    LEFT JOIN care_actions a ON a.action_id = b.candidate
    LEFT JOIN senders p ON p.phone = b.sender
) b
LEFT JOIN care_actions a ON a.action_id = b.found_action
LEFT JOIN senders p ON p.phone = b.sender
"""


def _consent_from_older_surveys(
    con: duckdb.DuckDBPyConnection, replies: pl.DataFrame, params: dict[str, object]
) -> None:
    """An SMS STOP (or START) that found no survey in the recent weeks is looked for among
    every survey: it must reach the customer the survey went to, not whoever else shares
    the number. Rare, so the whole outbox is read only for pages that hold one."""
    keys = [
        row[0]
        for row in con.execute(
            "SELECT dedupe_key FROM attributed WHERE channel = 'sms' AND campaign_id IS NULL "
            "AND intent IN ('opt_out', 'opt_in')"
        ).fetchall()
    ]
    if not keys:
        return
    con.execute("ALTER TABLE attributed RENAME TO attributed_recent")
    register_frame(con, "replies", replies.filter(pl.col("dedupe_key").is_in(keys)))
    con.execute(ATTRIBUTE_SQL, {**params, "earliest": datetime(1970, 1, 1, tzinfo=UTC)})
    con.unregister("replies")
    con.execute(
        "INSERT INTO attributed SELECT * FROM attributed_recent "
        "WHERE dedupe_key NOT IN (SELECT dedupe_key FROM attributed)"
    )
    con.execute("DROP TABLE attributed_recent")


def _consent_changes(con: duckdb.DuckDBPyConnection) -> int:
    """The replies' opt-outs and opt-ins: the subscriber's, and for a text or a call the
    number's (the one that texted, or that we called), whoever else's record holds it, and
    also from a number no subscriber holds (migration 0032)."""
    rows = con.execute("""
        INSERT INTO opt_outs
        SELECT subscriber_id, channel, intent, received_at, channel || '_reply', dedupe_key
        FROM attributed
        WHERE intent IN ('opt_out', 'opt_in') AND subscriber_id IS NOT NULL
        ON CONFLICT DO NOTHING RETURNING event""").fetchall()
    con.execute("""
        INSERT INTO phone_consent
        SELECT number, intent, received_at, dedupe_key FROM attributed
        WHERE intent IN ('opt_out', 'opt_in') AND number IS NOT NULL
        ON CONFLICT DO NOTHING""")
    _start_for_every_holder(con)
    return sum(1 for (event,) in rows if event == "opt_out")


def _start_for_every_holder(con: duckdb.DuckDBPyConnection) -> None:
    """START from a number gives it back to every record that holds it: a STOP from it came to
    one record, and its START (answering another's survey) freed the number but left that
    record opted out. Rare, so the subscribers are read by number only for pages with one."""
    [(starts,)] = con.execute(
        "SELECT count(*) FROM attributed WHERE intent = 'opt_in' AND number IS NOT NULL"
    ).fetchall()
    if not starts:
        return
    con.execute("""
        INSERT INTO opt_outs
        SELECT s.subscriber_id, a.channel, 'opt_in', a.received_at, a.channel || '_reply',
               a.dedupe_key || '|' || s.subscriber_id
        FROM attributed a JOIN subscribers s ON s.phone = a.number
        WHERE a.intent = 'opt_in' AND s.subscriber_id IS DISTINCT FROM a.subscriber_id
        ON CONFLICT DO NOTHING""")


def ingest_unsubscribes(con: duckdb.DuckDBPyConnection, items: list[InboxItem]) -> int:
    """One-click email unsubscribes (RFC 8058): an opt-out of email for that customer."""
    added = 0
    for item in items:
        added += len(
            con.execute(
                """
            INSERT INTO opt_outs
            SELECT subscriber_id, 'email', 'opt_out', ?, 'email_unsubscribe', ?
            FROM care_actions WHERE action_id = ?
            ON CONFLICT DO NOTHING RETURNING 1""",
                [item.received_at, f"unsubscribe:{item.dedupe_key}", item.payload["action_id"]],
            ).fetchall()
        )
    return added


# Where a Twilio status's send is looked for first: the sends claimed this long before the
# page's first item (claimed_at's zone maps skip the rest); only what is not found there is
# looked for in the whole outbox.
RECENT_SENDS = timedelta(days=7)


def _resolve_statuses(con: duckdb.DuckDBPyConnection, recent: datetime) -> None:
    """``resolved_statuses``: each event with the action it concerns. SendGrid's events (and
    the sandbox's receipts) name it; Twilio's give the provider id, which is not a key of the
    outbox: those are found among the week's sends (a page that names every action reads
    none of them)."""
    [(unnamed,)] = con.execute(
        "SELECT count(*) FROM statuses WHERE given_action_id IS NULL AND provider_id NOT NULL"
    ).fetchall()
    if not unnamed:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE resolved_statuses AS "
            "SELECT *, given_action_id AS action_id FROM statuses"
        )
        return
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE resolved_statuses AS
        SELECT s.*, coalesce(s.given_action_id, a.action_id) AS action_id
        FROM statuses s
        LEFT JOIN (SELECT action_id, provider_id FROM care_actions WHERE claimed_at >= ?) a
          ON s.given_action_id IS NULL AND a.provider_id = s.provider_id""",
        [recent],
    )
    [(unresolved,)] = con.execute(
        "SELECT count(*) FROM resolved_statuses WHERE action_id IS NULL AND provider_id NOT NULL"
    ).fetchall()
    if unresolved:
        con.execute("""
            UPDATE resolved_statuses r SET action_id = a.action_id
            FROM care_actions a
            WHERE r.action_id IS NULL AND a.provider_id = r.provider_id""")


def ingest_statuses(
    con: duckdb.DuckDBPyConnection, items: list[InboxItem], figures: CollectFigures
) -> None:
    """Delivery events; duplicates and out-of-order events never move a status backwards."""
    if not items:
        return
    register_frame(con, "statuses", _status_frame(items))
    # SendGrid shares one message id across a batch, so its events name their action.
    _resolve_statuses(con, min(item.received_at for item in items) - RECENT_SENDS)
    con.unregister("statuses")
    con.execute("""
        INSERT INTO delivery_events  -- new items only: landed first, under the same key
        SELECT event_key, action_id, provider_id, label, error_code, occurred_at
        FROM resolved_statuses""")
    con.execute(
        ADVANCE_STATUS_SQL.format(
            rank=_rank("status"),
            new=_rank("s.status"),
            old=_rank("a.status"),
            never_handed_over=", ".join(f"'{s}'" for s in NEVER_HANDED_OVER),
        )
    )
    con.execute(SENDER_SQL)
    figures.opt_outs += len(
        con.execute("""
        INSERT INTO opt_outs
        SELECT a.subscriber_id, 'email', 'opt_out', s.occurred_at, 'sendgrid_event', s.event_key
        FROM resolved_statuses s JOIN care_actions a USING (action_id)
        WHERE s.email_opt_out
        ON CONFLICT DO NOTHING RETURNING 1""").fetchall()
    )
    figures.status_events += len(items)


def _status_frame(items: list[InboxItem]) -> pl.DataFrame:
    events = [normalize(i.payload) for i in items]
    return pl.DataFrame(
        {
            "event_key": [f"status:{i.dedupe_key}" for i in items],
            "provider_id": [e.provider_id for e in events],
            "given_action_id": [e.action_id for e in events],
            "status": [e.status for e in events],
            "label": [e.status or _label(i.payload) for e, i in zip(events, items, strict=True)],
            "error_code": [e.error_code for e in events],
            "email_opt_out": [e.email_opt_out for e in events],
            "claimed_first": [e.claimed_first for e in events],
            "sender": [e.sender for e in events],
            "occurred_at": [e.at or i.received_at for e, i in zip(events, items, strict=True)],
        },
        schema_overrides={
            "provider_id": pl.String,
            "given_action_id": pl.String,
            "status": pl.String,
            "error_code": pl.String,
            "sender": pl.String,
            "occurred_at": pl.Datetime("us", "UTC"),
        },
    )


def _rank(column: str) -> str:
    return (
        f"CASE {column} "
        + " ".join(f"WHEN '{k}' THEN {v}" for k, v in RANK.items())
        + " ELSE -1 END"
    )


# An event moves an action forward, never back. An event for an action a crash or a timeout
# left 'sending' (or 'unconfirmed') settles it as sent: its time and message id come from the
# event, so its survey's replies are attributed like any other.
# An action settled before any attempt (held out, suppressed, expired) is no send: whatever an
# event says of it, it stays as it was. Nor is one still queued and never attempted, when the
# event's provider claims its sends before they leave (``DeliveryEvent.claimed_first``).
ADVANCE_STATUS_SQL = """
UPDATE care_actions a SET status = s.status, updated_at = s.occurred_at,
    attempts = CASE WHEN a.attempts = 0 AND s.status IN ('sent', 'delivered') THEN 1
                    ELSE a.attempts END,
    error_code = coalesce(s.error_code, a.error_code),
    provider_id = coalesce(a.provider_id, s.provider_id),
    sent_at = CASE WHEN a.sent_at IS NULL AND s.status IN ('sent', 'delivered')
                   THEN s.first_at ELSE a.sent_at END
FROM (SELECT action_id, arg_max(status, {rank}) AS status,
             arg_max(error_code, {rank}) AS error_code, max(occurred_at) AS occurred_at,
             min(occurred_at) AS first_at, min(provider_id) AS provider_id,
             bool_or(claimed_first) AS claimed_first
      FROM resolved_statuses WHERE status IS NOT NULL GROUP BY action_id) s
WHERE a.action_id = s.action_id AND {new} > {old}
    AND NOT (a.attempts = 0 AND (a.status IN ({never_handed_over})
                                 OR (a.status = 'queued' AND s.claimed_first)))
"""

# The number a Messaging Service sent from, as the status callback's From reports it (for
# a send that did not learn it: most already know it from the provider's answer).
SENDER_SQL = f"""
UPDATE care_actions a SET sender = s.sender
FROM (SELECT action_id, min(sender) AS sender FROM resolved_statuses
      WHERE sender IS NOT NULL AND action_id IS NOT NULL GROUP BY action_id) s
WHERE {looked_up("action_id", "a.sender IS NULL", by="s")}
"""


def _label(payload: dict[str, object]) -> str:
    return str(
        payload.get("event")
        or payload.get("MessageStatus")
        or payload.get("CallStatus")
        or payload.get("status")
        or "unknown"
    )
