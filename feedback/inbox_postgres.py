"""The inbox on PostgreSQL (psycopg 3 with a connection pool), for several service instances.

Ids come from a sequence, and a sequence does not commit in order: an instance may commit id 7
after another committed id 9. A drain that read "above the last id" would step over 7 for good.
So every item carries the id of the transaction that wrote it (``commit_order``), and a drain
reads only below the oldest transaction still running (the snapshot's xmin): below it, nothing
can still appear. An item written by a transaction that is still open is read by the next
drain. A long-open transaction anywhere in the cluster delays collect; it never loses an item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from feedback.inbox_db import (
    MIGRATIONS_TABLE,
    Connection,
    Cursor,
    InboxDb,
    Position,
    Row,
    pending_migrations,
    redact,
)
from warehouse.db import Migration, MigrationError

# Any fixed 64-bit numbers would do: they name the inbox's locks among the database's others.
MIGRATION_LOCK = 0x0CA2E1_0001
BOARD_LOCK = 0x0CA2E1_0002
POOL_SIZE = 8


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
    for_update = " FOR UPDATE"

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
        row = con.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(row.fetchone()[0])

    def page(self, con: Connection, after: Position, bound: int, limit: int) -> list[Row]:
        return con.execute(
            "SELECT commit_order, id, kind, dedupe_key, received_at, payload FROM inbox"
            " WHERE (commit_order, id) > (?, ?) AND commit_order < ?"
            " ORDER BY commit_order, id LIMIT ?",
            (after.order, after.id, bound, limit),
        ).fetchall()

    def after_position(self) -> str:
        return "(commit_order, id) > (?, ?)"


def migrate_postgres(con: Connection) -> list[Migration]:
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


def _apply(con: Connection, migration: Migration) -> None:
    assert isinstance(con, _PgConnection)
    try:
        con.raw.execute(migration.sql.encode())  # several statements: no parameters
    except psycopg.Error as exc:
        raise MigrationError(f"inbox migration {migration.version}: {exc}") from exc
    con.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
        (migration.version, migration.name, migration.checksum),
    )
