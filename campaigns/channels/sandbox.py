"""The embedded default provider: accepts sends, records them, reports their delivery.

It stands in for Twilio, SendGrid and the network between: each accepted message is recorded in
a SQLite file and a delivery status event goes to the inbox, as the providers' status webhooks
would. Sends are idempotent by key, so reconciling after a crash finds what was accepted.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from campaigns.channels.base import OutboundMessage, Provider, SendResult
from inbox.db import create_sqlite, open_sqlite
from inbox.inbox import Inbox

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
ID_PREFIX = {"sms": "SM", "voice": "CA", "email": "SG"}
SANDBOX_NUMBER = "+10000000000"  # the sandbox's one sender; the demo's customers reply to it
SANDBOX_EMAIL = "care@example.com"
SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Derived from the key, so unique with it; an index of its own (random text) cost two
    -- thirds of a 5,000-message batch's insert, and nothing looks a send up by it.
    provider_id     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    action_id       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT,
    body            TEXT NOT NULL,
    locale          TEXT NOT NULL,
    sent_at         TEXT NOT NULL
);
-- The last send whose receipt is in the inbox: the log commits first and the receipts follow,
-- so a crash between leaves sends without one (below: put at the next start, as a provider
-- retries its status callbacks until they are taken). One row; none in a log from before.
CREATE TABLE IF NOT EXISTS receipts_put (seq INTEGER NOT NULL)"""


@dataclass(frozen=True)
class SandboxMessage:
    """A message the sandbox accepted, as a reader of its log sees it."""

    seq: int  # the log's order: a reader keeps the last one it read
    provider_id: str
    action_id: str
    idempotency_key: str
    channel: str
    recipient: str
    locale: str
    sent_at: datetime
    body: str = ""  # what the customer reads (the demo's customers react to its words)


class SandboxProvider(Provider):
    name: ClassVar[str] = "sandbox"
    channels: ClassVar[frozenset[str]] = frozenset({"sms", "email", "voice"})
    # A batch's statements cost about the same for 500 actions as for 10,000, each looking
    # its keys up (dispatch raises the lookups to its batch: warehouse.db.looking_up). The
    # dispatch of 200,000 actions over 3 million sends ran at 15,146-18,159 actions/s in
    # batches of 10,000, 14,075-14,681 in batches of 5,000 (three runs each, alternated).
    max_batch: ClassVar[int] = 10_000
    remote: ClassVar[bool] = False
    idempotent: ClassVar[bool] = True  # its log is unique by idempotency key

    def __init__(self, path: Path, inbox: Inbox) -> None:
        super().__init__()
        self.path = path
        self.inbox = inbox
        create_sqlite(path, SCHEMA)
        self._writer: sqlite3.Connection | None = None
        self._writing = threading.Lock()
        # receipts a crash kept from the inbox, put as the sandbox starts (a provider on the
        # network retries its own callbacks)
        self.redelivered = self.deliver_pending_receipts()

    def deliver_pending_receipts(self) -> int:
        """Put the receipts a crash kept from the inbox (sends logged after the last receipt
        put): a collect then records those sends, and the replies that answer them find
        them, before a screen could expire or suppress them as never sent. How many."""
        with self._writing:
            con = self._write_connection()
            through = con.execute("SELECT max(seq) FROM receipts_put").fetchone()[0]
            if through is None:  # a log from before receipts were tracked: all were put
                self._receipts_put(con, con.execute("SELECT max(seq) FROM sent").fetchone()[0])
                return 0
            rows = con.execute(
                "SELECT seq, provider_id, action_id, channel, sent_at FROM sent WHERE seq > ?"
                " ORDER BY seq",
                (through,),
            ).fetchall()
            self.inbox.put_many(
                _receipt(provider_id, action_id, channel, datetime.fromisoformat(sent_at))
                for _, provider_id, action_id, channel, sent_at in rows
            )
            if rows:
                self._receipts_put(con, rows[-1][0])
            return len(rows)

    @staticmethod
    def _receipts_put(con: sqlite3.Connection, seq: int | None) -> None:
        con.execute("DELETE FROM receipts_put")
        con.execute("INSERT INTO receipts_put VALUES (?)", (seq or 0,))

    def connect(self) -> sqlite3.Connection:
        return open_sqlite(self.path)

    def sent_after(self, seq: int) -> list[SandboxMessage]:
        """Every accepted message after ``seq``, in order: the sandbox's log, for its readers
        (the demo's customers)."""
        with closing(self.connect()) as con:
            rows = con.execute(
                "SELECT seq, provider_id, action_id, idempotency_key, channel, recipient,"
                " locale, sent_at, body FROM sent WHERE seq > ? ORDER BY seq",
                (seq,),
            ).fetchall()
        return [
            SandboxMessage(
                seq=row[0],
                provider_id=row[1],
                action_id=row[2],
                idempotency_key=row[3],
                channel=row[4],
                recipient=row[5],
                locale=row[6],
                sent_at=datetime.fromisoformat(row[7]),
                body=row[8],
            )
            for row in rows
        ]

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results = [self._check(m) for m in messages]
        accepted = [(m, r) for m, r in zip(messages, results, strict=True) if r.ok]
        with self._writing:
            con = self._write_connection()
            con.execute("BEGIN IMMEDIATE")
            logged = con.executemany(
                "INSERT OR IGNORE INTO sent (provider_id, idempotency_key, action_id, channel,"
                " recipient, subject, body, locale, sent_at) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.provider_id,
                        m.idempotency_key,
                        m.action_id,
                        m.channel,
                        m.recipient,
                        m.subject,
                        m.body,
                        m.locale,
                        _iso(m.send_at),
                    )
                    for m, r in accepted
                ],
            ).rowcount
            taken_before = self._taken_before(con, accepted) if logged < len(accepted) else {}
            last = con.execute("SELECT max(seq) FROM sent").fetchone()[0]
            con.execute("COMMIT")
        results = [
            replace(r, sent_at=taken_before[r.action_id]) if r.action_id in taken_before else r
            for r in results
        ]
        # A repeat's receipt is the first's, kept by key (dated by the send it repeats).
        self.inbox.put_many(
            _receipt(r.provider_id or "", m.action_id, m.channel, m.send_at) for m, r in accepted
        )
        if logged:
            with self._writing:
                self._receipts_put(self._write_connection(), last)
        return results

    @staticmethod
    def _taken_before(
        con: sqlite3.Connection, accepted: list[tuple[OutboundMessage, SendResult]]
    ) -> dict[str, datetime]:
        """The accepted sends the log already held (a batch sent again after a crash): action
        id -> when the sandbox first took it."""
        mine = {m.idempotency_key: (m.action_id, m.send_at) for m, _ in accepted}
        earlier: dict[str, datetime] = {}
        for key, _, logged in _logged(con, list(mine)):
            action_id, now = mine[key]
            if (taken := datetime.fromisoformat(logged)) != now:
                earlier[action_id] = taken
        return earlier

    def _write_connection(self) -> sqlite3.Connection:
        """The log's writer, kept open for the provider's life: a connection opened and closed
        each batch made SQLite checkpoint its write-ahead log each time. NORMAL sync: a
        killed process loses nothing committed (only a power cut could), and the sandbox
        stands in for a provider's servers, not for the warehouse."""
        if self._writer is None:
            self._writer = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._writer.execute("PRAGMA synchronous=NORMAL")
        return self._writer

    def _check(self, message: OutboundMessage) -> SendResult:
        pattern = EMAIL if message.channel == "email" else E164
        if message.channel not in self.channels:
            return SendResult(
                message.action_id,
                error_code="unsupported_channel",
                error=f"channel {message.channel} is not supported",
            )
        if not pattern.match(message.recipient or ""):
            return SendResult(
                message.action_id,
                error_code="invalid_recipient",
                error=f"not a valid {message.channel} address",
            )
        digest = hashlib.md5(message.idempotency_key.encode()).hexdigest()
        sender = SANDBOX_EMAIL if message.channel == "email" else SANDBOX_NUMBER
        return SendResult(
            message.action_id, provider_id=ID_PREFIX[message.channel] + digest, sender=sender
        )

    def find_sent(self, messages: Sequence[OutboundMessage]) -> dict[str, str]:
        by_key = {m.idempotency_key: m.action_id for m in messages}
        with closing(self.connect()) as con:
            return {by_key[key]: provider_id for key, provider_id, _ in _logged(con, list(by_key))}


def _logged(con: sqlite3.Connection, keys: list[str]) -> Iterator[tuple[str, str, str]]:
    """The log's rows for these idempotency keys: key, provider id, sent_at (ISO)."""
    for start in range(0, len(keys), 500):  # SQLite's bound on a statement's variables
        chunk = keys[start : start + 500]
        yield from con.execute(
            "SELECT idempotency_key, provider_id, sent_at FROM sent WHERE idempotency_key IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        )


def _receipt(
    provider_id: str, action_id: str, channel: str, sent_at: datetime
) -> tuple[str, str, datetime, dict[str, str]]:
    """A send's delivery receipt, as an inbox item. It names the action and the sender, as a
    status callback does: a collect before the warehouse records the send (after a crash)
    still finds whose delivery it was and where it went from (dated by the receipt, as for
    every provider)."""
    sender = SANDBOX_EMAIL if channel == "email" else SANDBOX_NUMBER
    payload = {"provider_id": provider_id, "action_id": action_id, "status": "delivered"}
    payload |= {"channel": channel, "sender": sender}
    return "status", f"{provider_id}:delivered", sent_at + timedelta(seconds=3), payload


# A batch's messages share few send times: each written out once.
_iso = lru_cache(maxsize=1024)(datetime.isoformat)
