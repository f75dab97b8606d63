"""Group commit into the inbox: a request is acknowledged only once its items are on disk.

Requests arriving together share one transaction (and one fsync, in SQLite or PostgreSQL), so
durability does not cost one disk flush per request. The group is written in a few statements;
a request that cannot be stored (a replayed signature, text UTF-8 cannot carry) is refused
alone, and if the database refuses a value no check foresaw, the group is written again with a
savepoint per request, so only that request is refused. One thread owns the writes, so they
never contend.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inbox.db import Connection
from inbox.inbox import Inbox

Item = tuple[str, str, datetime, dict[str, Any]]
MAX_BATCH = 500
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
    """Raise ValueError for what UTF-8 cannot hold (a lone surrogate from a JSON escape
    such as \\ud800), before it reaches a shared transaction."""
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
        self._con: Connection | None = None  # used only on the writer thread
        self._pruned_at = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self._thread.submit(self._drop_connection)  # on its own thread, after the writes
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
            with self._transaction() as con:
                return function(con, *args)

        return await self.run_in_writer(run)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction on the writer's own connection. A connection that failed (a
        PostgreSQL restart, say) is dropped, and the next write opens a new one."""
        db = self.inbox.db
        if self._con is None:
            self._con = db.dedicated()
        try:
            with db.transaction(self._con) as con:
                yield con
        except Exception as exc:
            if not isinstance(exc, db.errors):
                self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            with suppress(Exception):
                con.close()

    def _write(self, writes: list[Write]) -> list[Exception | None]:
        """On the writer thread. A connection found dead (the database restarted since the
        last group) costs one retry on a new one, not the group: writing again is safe,
        every item and signature is keyed."""
        try:
            return self._write_once(writes)
        except Exception:
            if self._con is not None:  # the connection is fine: the failure is the answer
                raise
        return self._write_once(writes)

    def _write_once(self, writes: list[Write]) -> list[Exception | None]:
        """One transaction: the whole group in a few statements (each a round trip to
        PostgreSQL); if the database refuses one of them, the group again with a savepoint
        per request, so only the request at fault is refused."""
        now = time.time()
        refused: tuple[type[Exception], ...] = (ValueError, *self.inbox.db.errors)
        try:
            with self._transaction() as con:
                self._prune_signatures(con, now)
                return self._group(con, writes, now)
        except refused:
            pass  # found below, request by request
        with self._transaction() as con:
            self._prune_signatures(con, now)
            return [self._one(con, write, now) for write in writes]

    def _prune_signatures(self, con: Connection, now: float) -> None:
        if now - self._pruned_at > PRUNE_EVERY_SECONDS:
            cutoff = now - SIGNATURE_RETENTION_SECONDS
            con.execute("DELETE FROM seen_signatures WHERE seen_at < ?", (cutoff,))
            self._pruned_at = now

    def _group(self, con: Connection, writes: list[Write], now: float) -> list[Exception | None]:
        """Signatures in one statement and a check, then every accepted request's items."""
        outcomes: list[Exception | None] = [_unstorable(write) for write in writes]
        signed = [
            (w.signature, w.sid or "", now)
            for w, refused in zip(writes, outcomes, strict=True)
            if w.signature is not None and refused is None
        ]
        if signed:
            con.executemany(
                "INSERT INTO seen_signatures VALUES (?, ?, ?) ON CONFLICT (signature) DO NOTHING",
                signed,
            )
            first = dict(
                con.execute(
                    "SELECT signature, sid FROM seen_signatures WHERE signature IN"
                    f" ({','.join('?' * len(signed))})",
                    [signature for signature, _, _ in signed],
                ).fetchall()
            )
            outcomes = [
                _replayed(w) if refused is None and _is_replay(w, first) else refused
                for w, refused in zip(writes, outcomes, strict=True)
            ]
        accepted = [w for w, refused in zip(writes, outcomes, strict=True) if refused is None]
        self.inbox.insert(con, [item for write in accepted for item in write.items])
        return outcomes

    def _one(self, con: Connection, write: Write, now: float) -> Exception | None:
        refusals: tuple[type[Exception], ...] = (
            ReplayedSignatureError,
            ValueError,
            *self.inbox.db.errors,
        )
        con.execute("SAVEPOINT request")
        try:
            if write.signature is not None:
                _guard_signature(con, write.signature, write.sid or "", now)
            self.inbox.insert(con, write.items)
        except refusals as exc:
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


def _unstorable(write: Write) -> ValueError | None:
    """What UTF-8 cannot carry, in any of the request's values, refuses the request."""
    try:
        for _, key, _, payload in write.items:
            storable(payload)
            key.encode()
        (write.signature or "").encode()
        (write.sid or "").encode()
    except ValueError as exc:
        return exc
    return None


def _is_replay(write: Write, first_sid: dict[str, str]) -> bool:
    return write.signature is not None and first_sid.get(write.signature) != (write.sid or "")


def _replayed(_: Write) -> ReplayedSignatureError:
    return ReplayedSignatureError("a signature seen before with another SID")


def _guard_signature(con: Connection, signature: str, sid: str, now: float) -> None:
    con.execute(
        "INSERT INTO seen_signatures VALUES (?, ?, ?) ON CONFLICT (signature) DO NOTHING",
        (signature, sid, now),
    )
    (first_sid,) = con.execute(
        "SELECT sid FROM seen_signatures WHERE signature = ?", (signature,)
    ).fetchone()
    if first_sid != sid:
        raise ReplayedSignatureError("a signature seen before with another SID")
