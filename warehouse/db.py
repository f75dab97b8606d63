"""Open the warehouse and keep its schema current with ordered, recorded SQL migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from core.files import close_up, private_parents
from core.migrations import Migration, MigrationError, pending_migrations
from core.migrations import available_migrations as migrations_in
from warehouse.turn import holds, turn

MIGRATIONS_PACKAGE = "warehouse.migrations"


def available_migrations() -> list[Migration]:
    """The warehouse's migrations, in version order."""
    return migrations_in(MIGRATIONS_PACKAGE)


def applied_versions(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, checksum VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    rows = con.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def migrate(con: duckdb.DuckDBPyConnection) -> list[Migration]:
    """Apply the migrations this warehouse lacks, each in its own transaction; return them."""
    applied = []
    for migration in pending_migrations(available_migrations(), applied_versions(con), "warehouse"):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                [migration.version, migration.name, migration.checksum],
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise MigrationError(f"migration {migration.version}_{migration.name}: {exc}") from exc
        applied.append(migration)
    return applied


def is_writable(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` may write its database (a judge or a reader on a copy may not)."""
    row = con.execute(
        "SELECT NOT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return bool(row and row[0])


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction for the statements inside: committed together (the log flushed once,
    not once a statement), or rolled back when one fails (and the error raised)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def ingest_mark(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    """A mark collect keeps in ``ingest_state`` (an inbox id, a sequence number, a moment in
    epoch microseconds); None before it is first set."""
    row = con.execute("SELECT value FROM ingest_state WHERE name = ?", [name]).fetchone()
    return None if row is None else int(row[0])


# A batch names at most this many rows of a keyed table (an inbox page, a dispatch batch; the
# sandbox's larger batches raise it for their statements: ``looking_up``):
# up to that many, a join on the key pushes the batch's keys into the table's scan, which
# then looks them up in the key's index. Beyond DuckDB's defaults (50 keys pushed; an index
# used for at most 2,048 keys or 0.1% of the table), such joins read the whole table, so
# each batch of the day cost as much as the outbox or the inbox had grown.
LOOKUP_KEYS = 5_000


def lookup_tuning(keys: int) -> str:
    """The settings with which a join names up to ``keys`` keys and looks them up."""
    return f"SET dynamic_or_filter_threshold = {keys}; SET index_scan_max_count = {keys}"


TUNING = lookup_tuning(LOOKUP_KEYS)


@contextmanager
def looking_up(con: duckdb.DuckDBPyConnection, keys: int) -> Iterator[None]:
    """Within: joins look up to ``keys`` keys up, where a batch names more than LOOKUP_KEYS
    (the sandbox's dispatch); then LOOKUP_KEYS again. Only around such a batch's statements:
    set for a whole command, a tenure plan at 10 million subscribers held 376 MB more (1,054
    against 678 MB). DuckDB keeps ``index_scan_max_count`` for the whole database instance,
    not per connection: the process's other cursors see it meanwhile (none runs then)."""
    if keys <= LOOKUP_KEYS:
        yield
        return
    con.execute(lookup_tuning(keys))
    try:
        yield
    finally:
        con.execute(TUNING)


# DuckDB checkpoints once its log passes a threshold (16 MB by default), and each checkpoint
# writes out the index pages its changes touched, then reads them back lazily as keys are
# looked up: random keys touch most of an index, a day's outbox ids one branch (at a year, a
# checkpoint after 955 of them wrote 8-9 MiB in all when it merged no row groups). The
# outbox's and the inbound tables' keys grow with the history: at 10 million subscribers with
# 90 days of it, a collect checkpointed about every third page and spent more in commits than
# in its work. With this threshold a command's log is checkpointed once, when it closes the
# warehouse (or when its log passes it: a big load).
CHECKPOINT_THRESHOLD = "1GB"
WRITER_TUNING = f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'"


def looked_up(key: str, condition: str, *, table: str = "a", by: str) -> str:
    """The predicate joining ``table`` to the batch ``by`` on ``key``, for the rows of
    ``table`` that meet ``condition``.

    Joined by key, DuckDB looks the batch's keys up in the table's index (up to LOOKUP_KEYS
    of them). A condition on the table's own columns beside that join would be pushed down
    into the table's scan, which then reads every row (every action ever sent, for the
    outbox) instead of looking the keys up; wrapped in a CASE on the batch's side it stays
    above the join."""
    return f"{table}.{key} = {by}.{key} AND CASE WHEN {by}.{key} IS NOT NULL THEN ({condition}) END"


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file, creating and migrating it on first use."""
    if read_only:
        con = duckdb.connect(str(path), read_only=True)
        con.execute(TUNING)
        return con
    private_parents(path)
    con = duckdb.connect(str(path))
    close_up(path)  # DuckDB creates it by the umask (the entry points make that owner-only)
    try:
        con.execute(f"SET TimeZone = 'UTC'; {TUNING}; {WRITER_TUNING}")
        migrate(con)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def warehouse(
    path: Path, *, read_only: bool = False, holder: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse, opened once this process has its turn (waiting for it, see
    ``warehouse.turn``); read-only openers take a turn too, as DuckDB admits one process."""
    with turn(path, holder):
        if read_only and not path.exists():
            connect(path).close()  # created and migrated first
        con = connect(path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()


def query_frame(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[object] | dict[str, object] | None = None,
) -> pl.DataFrame:
    """Run a statement (a SELECT, or DML with RETURNING) and return its rows as a polars frame."""
    return pl.from_pandas(con.execute(sql, params or []).fetch_df())


def query_typed_frame(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[object] | dict[str, object] | None = None,
    schema: pl.Schema | None = None,
) -> pl.DataFrame:
    """``query_frame`` through Arrow, cast to ``schema`` when given: each column keeps DuckDB's
    type even with no row or only NULLs, and pandas is not imported for it (0.2-0.3 s of a
    command's start: a dispatch with no reply to collect between its batches imports none)."""
    close_open_result(con)
    relation = con.sql(sql, params=params)
    frame: pl.DataFrame = _as_polars_can(relation).pl()  # a relation's: no copy of the rows
    return frame.cast(schema) if schema is not None else frame


# Types polars cannot take from Arrow (an interval, "now() - visited_at", or a union, also
# inside a list or a struct): read as their text, as a template or a preview shows them.
_NOT_FOR_POLARS = ("INTERVAL", "UNION(")


def _as_polars_can(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    kinds = [str(kind) for kind in relation.types]
    if not any(word in kind for kind in kinds for word in _NOT_FOR_POLARS):
        return relation
    columns = []
    for name, kind in zip(relation.columns, kinds, strict=True):
        quoted = '"' + name.replace('"', '""') + '"'
        as_text = any(word in kind for word in _NOT_FOR_POLARS)
        columns.append(f"CAST({quoted} AS VARCHAR) AS {quoted}" if as_text else quoted)
    return relation.project(", ".join(columns))


def query_dicts(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run a statement and return its rows as dicts by column name (small results)."""
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def register_frame(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Expose a polars frame to SQL as ``name``."""
    close_open_result(con)
    con.register(name, frame.to_arrow())


def close_open_result(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB 2.0 refuses to register a frame or open a relation while an earlier result is
    still open (a ``fetchone()`` leaves it open until a fetch returns nothing); running any
    statement closes it."""
    con.execute("SELECT 1").fetchall()


class Held(Protocol):
    """The warehouse as a long piece of work holds it: ``con`` is the connection of the
    moment, and ``released()`` lets the warehouse go for a while (to wait on the network)."""

    @property
    def con(self) -> duckdb.DuckDBPyConnection: ...

    def released(self) -> AbstractContextManager[None]: ...


@dataclass
class Pinned:
    """A connection that stays open throughout (tests, benchmarks, a single process)."""

    con: duckdb.DuckDBPyConnection

    @contextmanager
    def released(self) -> Iterator[None]:
        yield


def as_held(warehouse: Held | duckdb.DuckDBPyConnection) -> Held:
    """A plain connection is held throughout (``Pinned``); a ``Held`` stays as it is."""
    return Pinned(warehouse) if isinstance(warehouse, duckdb.DuckDBPyConnection) else warehouse


class Session:
    """The warehouse, held in turns: opened on entry, closed and its turn given back within
    ``released()``, then taken again (waiting for it) with a new connection."""

    def __init__(self, path: Path, holder: str | None = None) -> None:
        self.path, self.holder = path, holder
        self._open: AbstractContextManager[duckdb.DuckDBPyConnection] | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        assert self._con is not None, "the warehouse is let go of"
        return self._con

    def __enter__(self) -> Session:
        if holds(self.path):
            # Letting go would not give the turn back while the outer hold keeps it.
            raise RuntimeError("a warehouse session must not start inside another hold")
        self._open = warehouse(self.path, holder=self.holder)
        self._con = self._open.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        opened, self._open, self._con = self._open, None, None
        if opened is not None:
            opened.__exit__(None, None, None)

    @contextmanager
    def released(self) -> Iterator[None]:
        self.__exit__()
        try:
            yield
        finally:
            self.__enter__()
