"""The inbox: replies and status events land here durably before anyone acknowledges them.

It is a SQLite file in WAL mode, not the DuckDB warehouse: the webhook service and the
simulator write here while a flow holds the warehouse; ``collect_feedback`` drains it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedback.statuses import normalize

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL,
    UNIQUE (kind, dedupe_key)
)"""


# SendGrid events name their care action (a custom arg): reconciliation looks them up by it.
EVENT_INDEX = (
    "CREATE INDEX IF NOT EXISTS inbox_event_action ON inbox "
    "(json_extract(payload, '$.action_id')) WHERE kind = 'status'"
)
RECENT_EVENTS = 10_000  # how far back the "is the event stream flowing" check reads


CLARIFIED_SCHEMA = "CREATE TABLE IF NOT EXISTS clarified (sender TEXT PRIMARY KEY, at TEXT)"


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


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode that waits up to 30 s for another writer."""
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def create_sqlite(path: Path, schema: str) -> None:
    """Create the file (WAL, so readers never block the writer) and its table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(open_sqlite(path)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(schema)


class Inbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        create_sqlite(path, SCHEMA)
        with closing(open_sqlite(path)) as con:
            con.execute(EVENT_INDEX)

    def _connect(self) -> sqlite3.Connection:
        con = open_sqlite(self.path)
        con.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        return con

    def put(
        self, kind: str, dedupe_key: str, received_at: datetime, payload: dict[str, Any]
    ) -> bool:
        """Store one item; False when an item with the same kind and key is already in."""
        return self.put_many([(kind, dedupe_key, received_at, payload)]) == 1

    def put_many(self, items: Iterable[tuple[str, str, datetime, dict[str, Any]]]) -> int:
        """Store items in one transaction; return how many were new."""
        with closing(self._connect()) as con:
            return self._insert(con, _encoded(items))

    @staticmethod
    def _insert(con: sqlite3.Connection, rows: list[tuple[str, str, str, str]]) -> int:
        con.execute("BEGIN IMMEDIATE")
        try:
            added = Inbox._rows(con, rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return added

    @staticmethod
    def _rows(con: sqlite3.Connection, rows: list[tuple[str, str, str, str]]) -> int:
        before = con.total_changes
        con.executemany(
            "INSERT OR IGNORE INTO inbox (kind, dedupe_key, received_at, payload)"
            " VALUES (?, ?, ?, ?)",
            rows,
        )
        return con.total_changes - before

    def insert(
        self, con: sqlite3.Connection, items: Iterable[tuple[str, str, datetime, dict[str, Any]]]
    ) -> int:
        """Store items inside the caller's open transaction; how many were new."""
        return self._rows(con, _encoded(items))

    def connect(self) -> sqlite3.Connection:
        return self._connect()

    def after(self, last_id: int, limit: int = 5000) -> Iterator[list[InboxItem]]:
        """Batches of items with an id above ``last_id``, in id order, up to the newest item
        at the start: a drain is bounded, never a chase after a service that keeps writing."""
        with closing(self._connect()) as con:
            (newest,) = con.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()
            while last_id < newest:
                rows = con.execute(
                    "SELECT id, kind, dedupe_key, received_at, payload FROM inbox"
                    " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                    (last_id, newest, limit),
                ).fetchall()
                if not rows:
                    return
                yield [
                    InboxItem(r[0], r[1], r[2], datetime.fromisoformat(r[3]), json.loads(r[4]))
                    for r in rows
                ]
                last_id = rows[-1][0]

    def may_clarify(self, sender: str, now: datetime, window_hours: int) -> bool:
        """True once per sender per window: the customer gets at most one clarifying reply."""
        with closing(self._connect()) as con:
            con.execute(CLARIFIED_SCHEMA)
            row = con.execute("SELECT at FROM clarified WHERE sender = ?", (sender,)).fetchone()
            if row and (now - datetime.fromisoformat(row[0])).total_seconds() < window_hours * 3600:
                return False
            con.execute("INSERT OR REPLACE INTO clarified VALUES (?, ?)", (sender, now.isoformat()))
            return True

    def email_evidence(self, action_ids: list[str], sent_arg: str) -> EmailEvidence:
        """SendGrid events for these actions, and the newest ``sent_arg`` among recent events."""
        events: dict[str, str | None] = {}
        with closing(self._connect()) as con:
            for start in range(0, len(action_ids), 500):
                chunk = action_ids[start : start + 500]
                rows = con.execute(
                    "SELECT json_extract(payload, '$.action_id'), payload FROM inbox"
                    " WHERE kind = 'status' AND json_extract(payload, '$.action_id') IN"
                    f" ({','.join('?' * len(chunk))}) ORDER BY id",
                    chunk,
                ).fetchall()
                for action_id, payload in rows:
                    event = json.loads(payload)
                    if "event" in event and action_id not in events:
                        events[action_id] = normalize(event).provider_id
            (newest,) = con.execute(
                f"SELECT max(CAST(json_extract(payload, '$.{sent_arg}') AS REAL)) FROM ("
                "SELECT payload FROM inbox WHERE kind = 'status' ORDER BY id DESC LIMIT ?)",
                (RECENT_EVENTS,),
            ).fetchone()
        newest_send = datetime.fromtimestamp(newest, UTC) if newest is not None else None
        return EmailEvidence(events, newest_send)

    def count(self) -> int:
        with closing(self._connect()) as con:
            return int(con.execute("SELECT count(*) FROM inbox").fetchone()[0])


def _encoded(
    items: Iterable[tuple[str, str, datetime, dict[str, Any]]],
) -> list[tuple[str, str, str, str]]:
    return [
        (kind, key, at.isoformat(), json.dumps(payload, ensure_ascii=False))
        for kind, key, at, payload in items
    ]
