"""The inbox on PostgreSQL (psycopg 3 with a connection pool), for several service instances.

Writers hold a shared advisory lock for their whole transaction; the drain reads its bound
under the exclusive one, so no id below the bound can still commit (see inbox.db). The drain
waits at most a few seconds for writers in flight: a writer stuck longer makes that collect
fail with a message saying so, and the next one tries again; nothing is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from core.migrations import Migration, MigrationError
from inbox.db import (
    MIGRATIONS_TABLE,
    Connection,
    Cursor,
    InboxDb,
    pending_migrations,
    redact,
)

# Any fixed 64-bit numbers would do: they name the inbox's locks among the database's others.
MIGRATION_LOCK = 0x0CA2E1_0001
BOARD_LOCK = 0x0CA2E1_0002
WRITING_LOCK = 0x0CA2E1_0003
DRAIN_LOCK_TIMEOUT = "5s"  # a group commit takes milliseconds
POOL_SIZE = 8


class InboxBusyError(RuntimeError):
    """The drain could not pass the writers in flight in time."""


class _PgConnection:
    """psycopg in autocommit mode, spoken to in the inbox's ``?`` style."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(_pg(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.raw.cursor() as cur:
            cur.executemany(_pg(sql), rows)
            return cur.rowcount

    def close(self) -> None:
        self.raw.close()


@lru_cache(maxsize=256)
def _pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``. The inbox's SQL never holds a literal ``%``."""
    if "%" in sql:
        raise ValueError(f"inbox SQL must not contain '%': {sql}")
    return re.sub(r"\?", "%s", sql)


class PostgresInboxDb(InboxDb):
    errors = (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)
    lock_board_sql = f"SELECT pg_advisory_xact_lock({BOARD_LOCK})"
    writing_lock_sql = f"SELECT pg_advisory_xact_lock_shared({WRITING_LOCK})"

    def __init__(self, url: str) -> None:
        self.url = url
        self.describe = redact(url)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as raw:
                migrate_postgres(_PgConnection(raw))
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot reach the inbox at {self.describe}: {exc}") from None
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,  # a restarted server's dead connections
            open=True,
            name="careloop-inbox",
        )

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self.pool.connection() as raw:
            yield _PgConnection(raw)

    def dedicated(self) -> Connection:
        return _PgConnection(psycopg.connect(self.url, autocommit=True, connect_timeout=10))

    def json_text(self, field: str) -> str:
        return f"(payload::json ->> '{field}')"

    def drain_bound(self, con: Connection) -> int:
        with self.transaction(con):
            con.execute(f"SET LOCAL lock_timeout = '{DRAIN_LOCK_TIMEOUT}'")
            try:
                con.execute(f"SELECT pg_advisory_xact_lock({WRITING_LOCK})")
            except psycopg.errors.LockNotAvailable:
                raise InboxBusyError(
                    f"a transaction has been writing the inbox at {self.describe} for over"
                    f" {DRAIN_LOCK_TIMEOUT}; collect again later (nothing was skipped)"
                ) from None
            # A new statement, so a new snapshot: it sees every writer that finished.
            return int(con.execute("SELECT coalesce(max(id), 0) FROM inbox").fetchone()[0])


def migrate_postgres(con: _PgConnection) -> list[Migration]:
    """Apply what this database lacks, in one transaction under an advisory lock: instances
    starting together wait for the first, then find nothing left to do."""
    applied: list[Migration] = []
    con.execute("BEGIN")
    try:
        con.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        con.execute(MIGRATIONS_TABLE)
        done = dict(con.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        for migration in pending_migrations(done, "postgres"):
            _apply(con, migration)
            applied.append(migration)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return applied


def _apply(con: _PgConnection, migration: Migration) -> None:
    try:
        con.raw.execute(migration.sql.encode())  # several statements: no parameters
    except psycopg.Error as exc:
        raise MigrationError(f"inbox migration {migration.version}: {exc}") from exc
    con.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
        (migration.version, migration.name, migration.checksum),
    )
