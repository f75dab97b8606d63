"""Group commit into the inbox: a request is acknowledged only once its items are on disk.

Requests arriving together share one SQLite transaction (and one fsync), so durability does not
cost one disk flush per request. Each request is written inside its own savepoint: one that
cannot be stored (a poison value, a replayed signature) is rolled back alone and refused, and
the others in the group commit. One thread owns the writes, so they never contend.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feedback.inbox import Inbox

Item = tuple[str, str, datetime, dict[str, Any]]
MAX_BATCH = 500
SIGNATURES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen_signatures "
    "(signature TEXT PRIMARY KEY, sid TEXT NOT NULL, seen_at REAL NOT NULL)"
)
# Twilio retries a webhook for minutes, not days: older signatures need not be kept.
SIGNATURE_RETENTION_SECONDS = 2 * 86400
PRUNE_EVERY_SECONDS = 3600


class ReplayedSignatureError(Exception):
    """A signature already seen with another SID: a captured request, re-split."""


@dataclass(frozen=True)
class Write:
    """One request's items, and (for a Twilio webhook) its signature and the SID it names."""

    items: list[Item]
    signature: str | None = None
    sid: str | None = None


def storable(payload: object) -> None:
    """Raise ValueError for what SQLite's UTF-8 cannot hold (a lone surrogate from a JSON
    escape such as \\ud800), before it reaches a shared transaction."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode (a lone surrogate)") from None


class InboxWriter:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._queue: asyncio.Queue[tuple[Write, asyncio.Future[None]]] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-writer")
        self._task: asyncio.Task[None] | None = None
        self._con: sqlite3.Connection | None = None  # used only on the writer thread
        self._pruned_at = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self._thread.shutdown(wait=True)

    async def put(self, kind: str, key: str, at: datetime, payload: dict[str, Any]) -> None:
        """Return once the item is durably stored (or was already there)."""
        await self.write(Write([(kind, key, at, payload)]))

    async def write(self, write: Write) -> None:
        """Return once the request's items are durably stored; raise what refused them."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((write, done))
        await done

    async def run_in_writer(self, function: Any, *args: Any) -> Any:
        """Run other inbox work on the writer's thread, in order with the writes."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def transact(self, function: Any, *args: Any) -> Any:
        """Run ``function(connection, *args)`` in a transaction of its own on the writer's
        thread, in order with the writes: committed, or rolled back if it raises."""

        def run() -> Any:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                result = function(con, *args)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result

        return await self.run_in_writer(run)

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = self.inbox.connect()
            self._con.execute(SIGNATURES_SCHEMA)
        return self._con

    def _write(self, writes: list[Write]) -> list[Exception | None]:
        """On the writer thread: one transaction, one savepoint per request."""
        con = self._connection()
        outcomes: list[Exception | None] = []
        now = time.time()
        con.execute("BEGIN IMMEDIATE")
        try:
            if now - self._pruned_at > PRUNE_EVERY_SECONDS:
                cutoff = now - SIGNATURE_RETENTION_SECONDS
                con.execute("DELETE FROM seen_signatures WHERE seen_at < ?", (cutoff,))
                self._pruned_at = now
            for write in writes:
                outcomes.append(self._one(con, write, now))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return outcomes

    def _one(self, con: sqlite3.Connection, write: Write, now: float) -> Exception | None:
        con.execute("SAVEPOINT request")
        try:
            if write.signature is not None:
                _guard_signature(con, write.signature, write.sid or "", now)
            self.inbox.insert(con, write.items)
        except (ReplayedSignatureError, ValueError, sqlite3.Error) as exc:
            con.execute("ROLLBACK TO request")
            con.execute("RELEASE request")
            return exc
        con.execute("RELEASE request")
        return None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self.run_in_writer(self._write, [w for w, _ in batch])
            except Exception as exc:  # the whole group failed: every waiting request learns
                outcomes = [exc] * len(batch)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)


def _guard_signature(con: sqlite3.Connection, signature: str, sid: str, now: float) -> None:
    con.execute("INSERT OR IGNORE INTO seen_signatures VALUES (?, ?, ?)", (signature, sid, now))
    (first_sid,) = con.execute(
        "SELECT sid FROM seen_signatures WHERE signature = ?", (signature,)
    ).fetchone()
    if first_sid != sid:
        raise ReplayedSignatureError("a signature seen before with another SID")
