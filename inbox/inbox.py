"""The inbox: replies and status events land here durably before anyone acknowledges them.

It is not the DuckDB warehouse: the webhook service and the simulator write here while a flow
holds the warehouse; ``collect_feedback`` drains it. It is a SQLite file in WAL mode by default,
or PostgreSQL (``CARELOOP_INBOX_URL``) when several service instances share it (inbox.db).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inbox.db import Connection, Row, as_datetime, open_inbox_db

if TYPE_CHECKING:
    from core.settings import Settings

RECENT_EVENTS = 10_000  # how far back the "is the event stream flowing" check reads
# Later than any reply window's cutoff (clarified.at holds ISO text): a sender marked so is
# never asked to clarify.
NEVER_AGAIN = "9999-12-31T23:59:59+00:00"
Item = tuple[str, str, datetime, dict[str, Any]]


def sendgrid_message_id(event: dict[str, Any]) -> str | None:
    """The message id a SendGrid event names: its ``sg_message_id`` is the id the send was
    answered with (X-Message-Id), a dot, and SendGrid's own suffix."""
    given = event.get("sg_message_id")
    return (given.split(".")[0] or None) if isinstance(given, str) else None


def _stamp(row: tuple[object, ...]) -> float | None:
    """A unix time as our custom argument gives it back, if the row holds a plausible one: not
    in the future (another sender's far-future value would make every email still waiting for
    its event look overdue, and be sent again)."""
    try:
        stamp = float(str(row[0]))
    except ValueError:
        return None
    return stamp if 0 < stamp <= datetime.now(UTC).timestamp() + 3600 else None


@dataclass(frozen=True)
class EmailEvidence:
    """What the inbox knows of some emails: which have a SendGrid event (any event proves
    SendGrid took the email), with its message id, and the newest send any event names."""

    events: dict[str, str | None]  # action id -> SendGrid message id
    newest_send: datetime | None


@dataclass(frozen=True)
class InboxItem:
    id: int
    kind: str  # sms | ivr | email_rating | unsubscribe | status
    dedupe_key: str
    received_at: datetime
    payload: dict[str, Any]


class Inbox:
    """The inbox at ``location``: a SQLite file (a path) or a database URL."""

    def __init__(self, location: Path | str) -> None:
        self.db = open_inbox_db(location)

    @cached_property
    def identity(self) -> str:
        """This inbox's own name, made when it was created."""
        with self.db.connection() as con:
            row = con.execute("SELECT value FROM inbox_meta WHERE name = 'identity'").fetchone()
        return str(row[0])

    @classmethod
    def of(cls, settings: Settings) -> Inbox:
        """The inbox the settings name: ``CARELOOP_INBOX_URL``, or the file in the home."""
        url = settings.inbox_url
        return cls(url.get_secret_value() if url else settings.inbox_path)

    def put(
        self, kind: str, dedupe_key: str, received_at: datetime, payload: dict[str, Any]
    ) -> bool:
        """Store one item; False when an item with the same kind and key is already in."""
        return self.put_many([(kind, dedupe_key, received_at, payload)]) == 1

    def put_many(self, items: Iterable[Item]) -> int:
        """Store items in one transaction; return how many were new."""
        rows = _encoded(items)
        with self.db.connection() as con, self.db.transaction(con):
            return self._rows(con, rows)

    def _rows(self, con: Connection, rows: list[tuple[str, str, str, str]]) -> int:
        # Held until commit (inside a savepoint rolled back, released with the ids it drew).
        self.db.hold_for_writing(con)
        return con.executemany(
            "INSERT INTO inbox (kind, dedupe_key, received_at, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, dedupe_key) DO NOTHING",
            rows,
        )

    def insert(self, con: Connection, items: Iterable[Item]) -> int:
        """Store items inside the caller's open transaction; how many were new."""
        return self._rows(con, _encoded(items))

    def news_between(self, last_id: int, condition: str) -> tuple[bool, int]:
        """Whether an item above ``last_id`` meets ``condition`` (SQL on the inbox's columns,
        written by the caller, never from input), up to the drain's bound; and that bound,
        the ``last_id`` of the next look."""
        with self.db.connection() as con:
            bound = self.db.drain_bound(con)
            row = con.execute(
                f"SELECT 1 FROM inbox WHERE id > ? AND id <= ? AND ({condition}) LIMIT 1",
                (last_id, bound),
            ).fetchone()
        return row is not None, max(bound, last_id)

    def actions_with_news(self, last_id: int) -> list[str]:
        """The action ids the status items above ``last_id`` name (receipts and callbacks no
        collect has taken), up to the drain's bound."""
        action = self.db.json_text("action_id")
        with self.db.connection() as con:
            bound = self.db.drain_bound(con)
            rows = con.execute(
                f"SELECT DISTINCT {action} FROM inbox WHERE kind = 'status' AND id > ? AND id <= ?"
                f" AND {action} IS NOT NULL",
                (last_id, bound),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def newest_id(self) -> int:
        """The newest item's id, once every id up to it is committed (see ``after``)."""
        with self.db.connection() as con:
            return self.db.drain_bound(con)

    def after(self, last_id: int, limit: int = 5000) -> Iterator[list[InboxItem]]:
        """Batches of items with an id above ``last_id``, in id order, up to the newest item
        committed at the start: a drain is bounded, never a chase after a service that keeps
        writing, and never steps over an id that commits later (inbox.db)."""
        with self.db.connection() as con:
            bound = self.db.drain_bound(con)
            while rows := self.db.page(con, last_id, bound, limit):
                yield [_item(row) for row in rows]
                last_id = rows[-1][0]

    def may_clarify(self, sender: str, now: datetime, window_hours: int) -> bool:
        """True once per sender per window: the customer gets at most one clarifying reply.
        One statement decides, so two service instances cannot both say yes."""
        sender = sender.replace("\x00", "")  # PostgreSQL text holds no NUL; no number has one
        at = now.astimezone(UTC)
        cutoff = (at - timedelta(hours=window_hours)).isoformat()
        with self.db.connection() as con:
            row = con.execute(
                "INSERT INTO clarified (sender, at) VALUES (?, ?) ON CONFLICT (sender) DO UPDATE"
                " SET at = excluded.at WHERE clarified.at <= ? RETURNING sender",
                (sender, at.isoformat(), cutoff),
            ).fetchone()
        return row is not None

    def clarifying(self, sender: str, allowed: bool) -> None:
        """An opted-out sender is never asked to rate, whatever they write next (a survey
        question to someone who asked us to stop is one more message they refused); opting
        back in makes them one whom may_clarify may ask again."""
        sender = sender.replace("\x00", "")
        with self.db.connection() as con:
            if allowed:
                con.execute("DELETE FROM clarified WHERE sender = ?", (sender,))
            else:
                con.execute(
                    "INSERT INTO clarified (sender, at) VALUES (?, ?) ON CONFLICT (sender)"
                    " DO UPDATE SET at = excluded.at",
                    (sender, NEVER_AGAIN),
                )

    def email_evidence(self, action_ids: list[str], sent_arg: str) -> EmailEvidence:
        """SendGrid events for these actions, and the newest ``sent_arg`` among recent events."""
        events: dict[str, str | None] = {}
        action = self.db.json_text("action_id")
        with self.db.connection() as con:
            for start in range(0, len(action_ids), 500):
                chunk = action_ids[start : start + 500]
                rows = con.execute(
                    f"SELECT {action}, payload FROM inbox WHERE kind = 'status' AND {action} IN"
                    f" ({','.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                ).fetchall()
                for action_id, payload in rows:
                    event = json.loads(payload)
                    # SendGrid's event of any kind (the service keeps one that gave none
                    # with its kind empty, which proves nothing was sent)
                    if isinstance(event.get("event"), str) and action_id not in events:
                        events[action_id] = sendgrid_message_id(event)
            stamps = con.execute(
                f"SELECT {self.db.json_text(sent_arg)} FROM ("
                "SELECT payload FROM inbox WHERE kind = 'status' ORDER BY id DESC LIMIT ?) recent",
                (RECENT_EVENTS,),
            ).fetchall()
        # read here, not cast in SQL: one event with another sender's text there would stop
        # PostgreSQL's cast, and with it every dispatch
        newest = max((s for s in map(_stamp, stamps) if s is not None), default=None)
        newest_send = datetime.fromtimestamp(newest, UTC) if newest is not None else None
        return EmailEvidence(events, newest_send)

    def prune(self, collected_up_to: int, before: datetime, batch: int = 5000) -> int:
        """Delete items collect has taken (ids up to its watermark) received before
        ``before``, in short transactions so the service's writes never wait long; how many.
        The warehouse keeps every item it collected (inbound_messages)."""
        pruned = 0
        cutoff = before.astimezone(UTC).isoformat()
        while True:
            with self.db.connection() as con, self.db.transaction(con):
                gone = con.execute(
                    "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE id <= ?"
                    " AND received_at < ? ORDER BY id LIMIT ?)",
                    (collected_up_to, cutoff, batch),
                ).rowcount
            pruned += gone
            if gone < batch:
                return pruned

    def count(self) -> int:
        with self.db.connection() as con:
            return int(con.execute("SELECT count(*) FROM inbox").fetchone()[0])


def _item(row: Row) -> InboxItem:
    item_id, kind, key, at, payload = row
    return InboxItem(item_id, kind, key, as_datetime(at), json.loads(payload))


def _encoded(items: Iterable[Item]) -> list[tuple[str, str, str, str]]:
    return [(kind, key, _iso(at), _json(payload)) for kind, key, at, payload in items]


# json.dumps(..., ensure_ascii=False) builds an encoder per call: a third of the encoding of a
# batch of receipts. The text stays readable (the replies are often Chinese).
_json = json.JSONEncoder(ensure_ascii=False).encode


# Items stored together mostly share their time (a batch's receipts): each written out once.
_iso = lru_cache(maxsize=1024)(datetime.isoformat)
