"""Store managers' sessions, on the server: in the inbox's database, which every service
instance shares, so a sign-out, a new manager or a revoke ends a session everywhere at once.

The cookie holds a random id (``secrets.token_urlsafe``); the table holds only its SHA-256, so
whoever reads the table (a backup, a replica) can sign nobody in. A session's end is fixed when
it starts: using it never moves it. Times are unix seconds, alike in both engines.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from inbox.db import InboxDb

PRUNE_EVERY = timedelta(minutes=10)  # expired rows are deleted at most this often per process


@dataclass(frozen=True)
class Session:
    id: str  # the cookie's value; never stored
    store_id: str
    csrf: str  # the token every change posted in this session carries
    locale: str | None
    expires: datetime


class ManagerSessions:
    def __init__(self, db: InboxDb) -> None:
        self.db = db
        self._pruned_at: datetime | None = None

    def start(self, store_id: str, now: datetime, lifetime: timedelta) -> Session:
        """A new session for the store, ending ``lifetime`` after ``now`` whatever happens."""
        self._prune_now_and_then(now)
        session = Session(
            secrets.token_urlsafe(32), store_id, secrets.token_urlsafe(24), None, now + lifetime
        )
        with self.db.connection() as con:
            con.execute(
                "INSERT INTO manager_sessions"
                " (id_hash, store_id, csrf, locale, created_at, expires_at)"
                " VALUES (?, ?, ?, NULL, ?, ?)",
                (
                    _hash(session.id),
                    store_id,
                    session.csrf,
                    now.timestamp(),
                    session.expires.timestamp(),
                ),
            )
        return session

    def find(self, session_id: str, now: datetime) -> Session | None:
        """The live session with this id, or None (unknown, ended or past its end)."""
        with self.db.connection() as con:
            row = con.execute(
                "SELECT store_id, csrf, locale, expires_at FROM manager_sessions"
                " WHERE id_hash = ? AND expires_at > ?",
                (_hash(session_id), now.timestamp()),
            ).fetchone()
        if row is None:
            return None
        store_id, csrf, locale, expires = row
        return Session(session_id, store_id, csrf, locale, datetime.fromtimestamp(expires, UTC))

    def set_locale(self, session_id: str, locale: str) -> None:
        with self.db.connection() as con:
            con.execute(
                "UPDATE manager_sessions SET locale = ? WHERE id_hash = ?",
                (locale, _hash(session_id)),
            )

    def end(self, session_id: str) -> None:
        with self.db.connection() as con:
            con.execute("DELETE FROM manager_sessions WHERE id_hash = ?", (_hash(session_id),))

    def revoke(self, store_id: str, now: datetime) -> int:
        """End every session of the store and refuse sign-in links issued before ``now`` (a
        new manager, or a link or device lost); how many sessions ended."""
        with self.db.connection() as con, self.db.transaction(con):
            con.execute(
                "INSERT INTO manager_revocations (store_id, revoked_at) VALUES (?, ?)"
                " ON CONFLICT (store_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                (store_id, now.timestamp()),
            )
            ended = con.execute("DELETE FROM manager_sessions WHERE store_id = ?", (store_id,))
            return max(ended.rowcount, 0)

    def revoked_at(self, store_id: str) -> datetime | None:
        """When the store's links issued until then stopped working, if ever."""
        with self.db.connection() as con:
            row = con.execute(
                "SELECT revoked_at FROM manager_revocations WHERE store_id = ?", (store_id,)
            ).fetchone()
        return datetime.fromtimestamp(row[0], UTC) if row else None

    def prune(self, now: datetime) -> int:
        """Delete the sessions past their end; how many."""
        with self.db.connection() as con:
            gone = con.execute(
                "DELETE FROM manager_sessions WHERE expires_at <= ?", (now.timestamp(),)
            )
            return max(gone.rowcount, 0)

    def _prune_now_and_then(self, now: datetime) -> None:
        # Sign-ins are rare; pruning on some of them keeps the table to the live sessions
        # without a job of its own.
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            self.prune(now)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
