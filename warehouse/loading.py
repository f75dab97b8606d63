"""Load stores, subscribers and visits (CSV or Parquet), validated before the warehouse sees them.

A file is read as text (UTF-8; the first line that is not is named), its columns matched to
the kind's (missing ones refuse the file, extra ones are reported and ignored), then the Great
Expectations suite (``warehouse.expectations``) validates every row. By default a file with
any bad row is refused whole, with every bad row listed by line and reason; with
``quarantine`` the good rows are upserted and the bad ones kept in the quarantine table (and a
CSV beside the report). Every load, refused or not, leaves a ``load_reports`` row and its
validation JSON in ``$CARELOOP_HOME/reports/validation/``.
"""

from __future__ import annotations

import codecs
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import phonenumbers
import polars as pl
from email_validator import EmailNotValidError, validate_email

from core.clock import business_date
from core.errors import UserError
from core.files import write_private_csv, write_private_text
from core.progress import tracked
from core.settings import Settings
from warehouse.db import query_frame, register_frame
from warehouse.entities import ENTITIES, Entity
from warehouse.expectations import DerivedCheck, Validation, suite_rules, validate

# Times are normalised to one shape before parsing: "T" between date and time, seconds, and
# an offset written +HH:MM (or none: then the time is the store's local time).
ISO_SHAPE = [
    (r"^(\d{4}-\d{2}-\d{2}) ", "${1}T"),
    (r"T(\d{2}:\d{2})($|[Z+-])", "T${1}:00${2}"),
    (r"Z$", "+00:00"),
    (r"([+-]\d{2})(\d{2})$", "${1}:${2}"),
]
CHUNK_BYTES = 1 << 20


class LoadError(UserError, ValueError):
    """A file refused as a whole: unreadable, empty, not UTF-8, or a column missing."""


@dataclass
class LoadResult:
    load_id: str
    entity: str
    source: str
    mode: str  # refuse | quarantine
    rows_read: int = 0
    rows_loaded: int = 0
    bad_rows: dict[int, list[str]] = field(default_factory=dict)  # line -> reasons
    ignored_columns: list[str] = field(default_factory=list)
    refused: str | None = None  # why the whole file was refused before any row was read
    quarantine_file: Path | None = None
    validation: Validation | None = None

    @property
    def success(self) -> bool:
        return not self.bad_rows and self.refused is None

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "load_id": self.load_id,
            "entity": self.entity,
            "source": self.source,
            "mode": self.mode,
            "success": self.success,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "ignored_columns": self.ignored_columns,
            "refused": self.refused,
            "bad_rows": {str(line): reasons for line, reasons in sorted(self.bad_rows.items())},
        }
        if self.validation:
            report |= {
                "statistics": self.validation.statistics,
                "expectations": self.validation.summary,
                "great_expectations": self.validation.gx_result,
            }
        return report


class LoadRefusedError(LoadError):
    def __init__(self, result: LoadResult) -> None:
        lines = [
            f"line {line}: {'; '.join(reasons)}"
            for line, reasons in sorted(result.bad_rows.items())
        ]
        super().__init__(
            f"{len(result.bad_rows)} bad row(s) in {result.entity}; nothing loaded:\n"
            + "\n".join(lines)
        )
        self.result = result


def load_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    kind: str,
    path: Path,
    *,
    quarantine: bool = False,
    today: date | None = None,
) -> LoadResult:
    """Validate then upsert by id; refuse the whole file on any bad row unless quarantining."""
    entity = entity_named(kind)
    load_id = f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    result = LoadResult(load_id, kind, str(path), "quarantine" if quarantine else "refuse")
    try:
        with tracked(f"{kind}: reading {path.name}"):
            raw, result.ignored_columns = read_table(path, entity)
    except LoadError as refused:
        result.refused = str(refused)
        _keep_report(con, settings, result)
        raise
    frame = checked_frame(con, raw, entity)
    rules = suite_rules(entity, settings, today or business_date(settings.zone), DERIVED[kind])
    with tracked(f"{kind}: validating {raw.height:,} rows"):
        validation = validate(frame, entity, rules)
    result.rows_read, result.validation = raw.height, validation
    result.bad_rows = validation.bad_rows
    with tracked(f"{kind}: writing"):
        _write(con, settings, entity, frame, result, quarantine)
    if result.bad_rows and not quarantine:
        raise LoadRefusedError(result)
    return result


def entity_named(kind: str) -> Entity:
    if kind not in ENTITIES:
        raise LoadError(f"unknown kind {kind!r}; use {', '.join(ENTITIES)}")
    return ENTITIES[kind]


def read_table(path: Path, entity: Entity) -> tuple[pl.DataFrame, list[str]]:
    """The kind's columns as text, with the source line number (CSV: the header is line 1),
    and the file's other columns, which are ignored."""
    try:
        if path.suffix.lower() == ".parquet":
            frame, first_line = _as_text(pl.read_parquet(path)), 1
        else:
            check_utf8(path)
            frame, first_line = pl.read_csv(path, infer_schema=False), 2
    except pl.exceptions.NoDataError:
        raise LoadError(f"{path}: the file is empty") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    missing = [c.name for c in entity.columns if c.required and c.name not in frame.columns]
    if missing:
        raise LoadError(f"{path}: missing column(s) {', '.join(missing)}")
    absent = [c for c in entity.names if c not in frame.columns]  # optional: empty
    frame = frame.with_columns(pl.lit(None, pl.String).alias(c) for c in absent)
    if frame.is_empty():
        raise LoadError(f"{path}: no rows below the header")
    ignored = [c for c in frame.columns if c not in entity.names]
    frame = frame.select(entity.names).with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in entity.names
    )
    lines = pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64).alias("_line")
    return frame.with_columns(lines), ignored


def check_utf8(path: Path) -> None:
    """Refuse a file that is not UTF-8 (a GB18030 export, say), naming its first bad line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = line + exc.object.count(b"\n", 0, exc.start)
                raise LoadError(
                    f"{path}: line {bad} is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
                    "save the file as UTF-8"
                ) from None
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise LoadError(f"{path}: line {line} is not UTF-8 (cut off at the end)") from None


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """A Parquet file's typed columns as the text a CSV would hold."""

    def text(name: str, dtype: pl.DataType) -> pl.Expr:
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            shape = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
            return column.dt.to_string(shape)
        if dtype == pl.Boolean:
            return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false"))
        return column.cast(pl.String)

    return frame.select(text(n, t).alias(n) for n, t in frame.schema.items())


def checked_frame(
    con: duckdb.DuckDBPyConnection, raw: pl.DataFrame, entity: Entity
) -> pl.DataFrame:
    """The raw columns, parsed values beside them (``{c}__parsed``, ``{c}__local`` for a time
    with no offset), and one ``ok_*`` column per rule GX cannot express."""
    frame = raw.with_columns(_parsed(entity))
    frame = frame.with_columns(_derived_flags(entity))
    return _with_references(con, frame, entity)


def _parsed(entity: Entity) -> list[pl.Expr]:
    exprs = [
        pl.col(c)
        .str.to_date("%Y-%m-%d", strict=False)
        .cast(pl.Datetime("ns"))
        .alias(f"{c}__parsed")
        for c in entity.of_type("date")
    ]
    for name in entity.of_type("timestamp"):
        shaped = pl.col(name)
        for pattern, replacement in ISO_SHAPE:
            shaped = shaped.str.replace(pattern, replacement)
        exprs += [
            shaped.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", strict=False).alias(
                f"{name}__parsed"
            ),
            shaped.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False).alias(f"{name}__local"),
        ]
    return exprs


def valid_phone(value: str | None) -> bool:
    """A real number in its country's numbering plan (the E.164 shape is GX's rule)."""
    if value is None:
        return True
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value))
    except phonenumbers.NumberParseException:
        return False


def valid_email(value: str | None) -> bool:
    if value is None:
        return True
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# Rules GX cannot express, per kind: (check, column, reason). References are checked against
# the warehouse; the others by a library, value by value.
DERIVED = {
    "stores": [DerivedCheck("manager_email", "manager_email", "is not a valid email address")],
    "regions": [DerivedCheck("contact_email", "contact_email", "is not a valid email address")],
    "subscribers": [
        DerivedCheck("phone", "phone", "is not a valid number in its country's numbering plan"),
        DerivedCheck("email", "email", "is not a valid email address"),
        DerivedCheck("home_store", "home_store_id", "is not a known store"),
    ],
    "visits": [
        DerivedCheck("subscriber", "subscriber_id", "is not a known subscriber"),
        DerivedCheck("store", "store_id", "is not a known store"),
    ],
}
VALUE_TESTS = {"phone": valid_phone, "email": valid_email}


def _derived_flags(entity: Entity) -> list[pl.Expr]:
    types = {c.name: c.type for c in entity.columns}
    return [
        pl.col(check.column)
        .map_elements(VALUE_TESTS[types[check.column]], return_dtype=pl.Boolean, skip_nulls=True)
        .alias(f"ok_{check.name}")
        for check in DERIVED[entity.kind]
        if types[check.column] in VALUE_TESTS
    ]


def _with_references(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, entity: Entity
) -> pl.DataFrame:
    """``ok_*`` for each column that names a row the warehouse must already hold (stores load
    before the subscribers and visits that name them)."""
    checks = {c.column: c.name for c in DERIVED[entity.kind]}
    references = [c for c in entity.columns if c.references]
    if not references:
        return frame
    flags = ", ".join(
        f"({c.name} IS NULL OR {c.name} IN (SELECT {c.references.split('.')[1]} "
        f"FROM {c.references.split('.')[0]})) AS ok_{checks[c.name]}"
        for c in references
        if c.references
    )
    register_frame(con, "incoming", frame.select("_line", *(c.name for c in references)))
    flagged = query_frame(con, f"SELECT _line, {flags} FROM incoming")  # a plain fetch
    con.unregister("incoming")
    return frame.join(flagged.cast({"_line": pl.Int64}), on="_line", how="left")


def _write(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity: Entity,
    frame: pl.DataFrame,
    result: LoadResult,
    quarantine: bool,
) -> None:
    """Upsert the good rows and keep the bad ones (quarantine), or write nothing but the
    report (refuse), in one transaction."""
    bad = frame.filter(pl.col("_line").is_in(list(result.bad_rows)))
    con.execute("BEGIN TRANSACTION")
    try:
        if quarantine or bad.is_empty():
            result.rows_loaded = _upsert(
                con, entity, frame.filter(~pl.col("_line").is_in(list(result.bad_rows)))
            )
            _quarantine(con, entity, bad, result)
        _insert_report(con, result)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if quarantine and not bad.is_empty():
        result.quarantine_file = _quarantine_csv(settings, entity, bad, result)
    _write_report_json(settings, result)


def _keep_report(con: duckdb.DuckDBPyConnection, settings: Settings, result: LoadResult) -> None:
    _insert_report(con, result)
    _write_report_json(settings, result)


def _insert_report(con: duckdb.DuckDBPyConnection, result: LoadResult) -> None:
    con.execute(
        "INSERT INTO load_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            result.load_id,
            result.entity,
            result.source,
            result.mode,
            result.rows_read,
            result.rows_loaded,
            len(result.bad_rows),
            result.success,
            json.dumps(result.report(), default=str),
        ],
    )


# How each column reaches the warehouse: typed from its parsed value, or as text.
def _typed_columns(entity: Entity) -> list[pl.Expr]:
    exprs = []
    for column in entity.columns:
        name = column.name
        if column.type == "date":
            exprs.append(pl.col(f"{name}__parsed").cast(pl.Date).alias(name))
        elif column.type == "timestamp":
            exprs += [pl.col(f"{name}__parsed"), pl.col(f"{name}__local")]
        elif column.type == "boolean":
            exprs.append((pl.col(name).str.to_lowercase() == "true").alias(name))
        else:
            exprs.append(pl.col(name))
    return exprs


def _value_sql(entity: Entity, name: str) -> str:
    """A time without an offset is the visited store's local time."""
    column = next(c for c in entity.columns if c.name == name)
    if column.type != "timestamp":
        return name
    return (
        f"coalesce({name}__parsed, timezone((SELECT timezone FROM stores s "
        f"WHERE s.store_id = good_rows.store_id), {name}__local))"
    )


def _upsert(con: duckdb.DuckDBPyConnection, entity: Entity, good: pl.DataFrame) -> int:
    if good.is_empty():
        return 0
    register_frame(con, "good_rows", good.select(_typed_columns(entity)))
    columns = ", ".join(entity.names)
    values = ", ".join(_value_sql(entity, c) for c in entity.names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in entity.names if c != entity.key)
    con.execute(
        f"INSERT INTO {entity.table} ({columns}) SELECT {values} FROM good_rows "
        f"ON CONFLICT ({entity.key}) DO UPDATE SET {updates}"
    )
    con.unregister("good_rows")
    return good.height


def _quarantine(
    con: duckdb.DuckDBPyConnection, entity: Entity, rows: pl.DataFrame, result: LoadResult
) -> None:
    records = [
        (
            result.load_id,
            entity.table,
            row["_line"],
            json.dumps({c: row[c] for c in entity.names}, ensure_ascii=False),
            result.bad_rows[row["_line"]],
        )
        for row in rows.iter_rows(named=True)
    ]
    if records:
        con.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, now())", records)


def _quarantine_csv(
    settings: Settings, entity: Entity, rows: pl.DataFrame, result: LoadResult
) -> Path:
    """The bad rows as they were, with their reasons, for whoever fixes the source."""
    path = settings.reports_dir / "validation" / f"{result.load_id}.quarantine.csv"
    header = ["line", *entity.names, "reasons"]
    write_private_csv(
        path,
        header,
        [
            (
                row["_line"],
                *(row[c] for c in entity.names),
                "; ".join(result.bad_rows[row["_line"]]),
            )
            for row in rows.iter_rows(named=True)
        ],
    )
    return path


def report_path(settings: Settings, load_id: str) -> Path:
    return settings.reports_dir / "validation" / f"{load_id}.json"


def _write_report_json(settings: Settings, result: LoadResult) -> None:
    text = json.dumps(result.report(), ensure_ascii=False, indent=2, default=str)
    write_private_text(report_path(settings, result.load_id), text)
