"""Where the inbox lives: a SQLite file (the default, one machine) or PostgreSQL (several
service instances), behind one small connection interface.

The inbox's SQL is written once, in SQLite's ``?`` style and in the syntax both engines share
(``ON CONFLICT``, ``RETURNING``, savepoints); what differs (JSON access, locks) is a method or
attribute of the engine. Both schemas are versioned migrations, recorded like the warehouse's.

Collect drains by id, up to a bound, and must never step over an id that commits later. SQLite
has one writer at a time, so its ids commit in order. PostgreSQL's sequence does not: one
instance may commit id 7 after another committed id 9. So every transaction that writes the
inbox holds a shared lock from before its ids are drawn until it commits, and the drain's bound
is read under the exclusive lock: once it has it, every id up to the bound is committed.
"""

from __future__ import annotations

import atexit
import os
import re
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from core.files import close_up, new_private_file
from core.migrations import Migration, MigrationError, available_migrations
from core.migrations import pending_migrations as pending


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int: ...
    def close(self) -> None: ...


Row = tuple[int, str, str, Any, str]  # id, kind, dedupe key, received at, payload


class InboxDb(ABC):
    """One inbox database. Connections are in autocommit mode: ``transaction`` opens one."""

    errors: tuple[type[Exception], ...]  # what one bad request's statement can raise
    describe: str  # for messages: never holds a password
    begin_sql = "BEGIN"
    writing_lock_sql: str | None = None  # held by every transaction that writes the inbox
    lock_board_sql: str | None = None  # held by every transaction that writes the boards

    @abstractmethod
    def connection(self) -> AbstractContextManager[Connection]:
        """A connection for one piece of work (from the pool, for PostgreSQL)."""

    @abstractmethod
    def dedicated(self) -> Connection:
        """A connection of the caller's own, kept open (the service's writer)."""

    @abstractmethod
    def json_text(self, field: str) -> str:
        """SQL for a top-level field of ``payload`` as text."""

    @abstractmethod
    def drain_bound(self, con: Connection) -> int:
        """The newest id, once every id up to it is committed: none can still appear below."""

    def page(self, con: Connection, after: int, bound: int, limit: int) -> list[Row]:
        """Items with ids above ``after`` and up to ``bound``, in id order."""
        return con.execute(
            "SELECT id, kind, dedupe_key, received_at, payload FROM inbox"
            " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after, bound, limit),
        ).fetchall()

    def hold_for_writing(self, con: Connection) -> None:
        """In a transaction about to write the inbox: keep the drain's bound from passing
        the ids it is about to draw (see the module's docstring)."""
        if self.writing_lock_sql:
            con.execute(self.writing_lock_sql)

    @abstractmethod
    def close(self) -> None:
        """Release what the database holds open (a pool)."""

    @contextmanager
    def transaction(self, con: Connection) -> Iterator[Connection]:
        con.execute(self.begin_sql)
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def lock_board(self, con: Connection) -> None:
        """Serialise board writers (a publish and a manager's change) across instances."""
        if self.lock_board_sql:
            con.execute(self.lock_board_sql)


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode that waits up to 30 s for another writer."""
    return sqlite3.connect(path, timeout=30, isolation_level=None)


def create_sqlite(path: Path, schema: str) -> None:
    """The file in WAL mode (so readers never block the writer), with its tables.

    A new file is made whole under another name and linked into place, so no process ever
    opens it before it is in WAL mode. Switching a file that others have open fails at once
    with "database is locked", whatever the busy timeout: SQLite will not wait to upgrade a
    read lock to a write lock (it could deadlock), and the switch needs both."""
    if not path.exists():
        _link_new_sqlite(path, schema)
    close_up(path)  # one an older version left open to others
    with closing(open_sqlite(path)) as con:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")  # a file made by someone else
        con.executescript(schema)


def _link_new_sqlite(path: Path, schema: str) -> None:
    """Create ``path`` complete, or leave the one another process linked first. The draft is
    owner-only before SQLite opens it, so its -wal and -shm files are too."""
    draft = new_private_file(path.with_name(f".{path.name}.{uuid.uuid4().hex}.new"))
    try:
        with closing(open_sqlite(draft)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(schema)
        with suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink()


class _SqliteConnection:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.raw.executemany(sql, rows).rowcount

    def close(self) -> None:
        self.raw.close()


class SqliteInboxDb(InboxDb):
    errors = (sqlite3.Error,)
    begin_sql = "BEGIN IMMEDIATE"  # take the write lock first: no upgrade deadlock

    def __init__(self, path: Path) -> None:
        self.path = path
        self.describe = str(path)
        create_sqlite(path, "")
        with closing(open_sqlite(path)) as con:
            migrate_sqlite(con)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        con = self.dedicated()
        try:
            yield con
        finally:
            con.close()

    def dedicated(self) -> Connection:
        raw = open_sqlite(self.path)
        raw.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        return _SqliteConnection(raw)

    def close(self) -> None:
        """A file holds nothing open between connections."""

    def json_text(self, field: str) -> str:
        return f"json_extract(payload, '$.{field}')"

    def drain_bound(self, con: Connection) -> int:
        return int(con.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()[0])


def migrate_sqlite(con: sqlite3.Connection) -> list[Migration]:
    """Apply what this file lacks, each migration and its record in one transaction. SQLite
    migrations are idempotent (IF NOT EXISTS, OR IGNORE): the first one's tables already exist
    in inbox files older than the migrations, and two processes starting at once may both
    apply one."""
    con.execute(MIGRATIONS_TABLE)
    done = dict(con.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    applied = []
    for migration in pending_migrations(done, "sqlite"):
        try:
            con.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql};\n"
                "INSERT OR IGNORE INTO schema_migrations (version, name, checksum) VALUES"
                f" ({migration.version}, '{migration.name}', '{migration.checksum}');\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise MigrationError(f"inbox migration {migration.version}: {exc}") from exc
        applied.append(migration)
    return applied


MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL)"
)


def pending_migrations(done: dict[int, str], engine: str) -> list[Migration]:
    """The engine's migrations not in ``done`` (version -> checksum), in order."""
    return pending(available_migrations(f"inbox.migrations.{engine}"), done, "inbox")


def open_inbox_db(location: Path | str) -> InboxDb:
    """A path or ``sqlite:///path`` for SQLite; ``postgresql://…`` for PostgreSQL."""
    if isinstance(location, Path):
        return SqliteInboxDb(location)
    if location.startswith(("postgresql://", "postgres://")):
        from inbox.postgres import PostgresInboxDb

        if location not in _POSTGRES:
            if not _POSTGRES:
                atexit.register(close_shared)
            _POSTGRES[location] = PostgresInboxDb(location)
        return _POSTGRES[location]
    if location.startswith("sqlite:///"):
        return SqliteInboxDb(Path(location.removeprefix("sqlite:///")))
    raise ValueError(
        f"CARELOOP_INBOX_URL must start with sqlite:/// or postgresql:// (got {redact(location)!r})"
    )


# One pool per URL and process: every Inbox opened on it shares the pool.
_POSTGRES: dict[str, InboxDb] = {}


def close_shared() -> None:
    """Close the shared pools (at exit, and after each test that opened one)."""
    while _POSTGRES:
        _POSTGRES.popitem()[1].close()


def redact(url: str) -> str:
    """The URL with its passwords replaced, for messages and logs: the one in the user part
    (up to its last ``@``, should the password hold one unescaped) and libpq's ``password``
    and ``sslpassword`` parameters."""
    url = re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&](?:ssl)?password=)[^&]*", r"\1***", url)


def as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
