"""Load subscribers, stores and visits (CSV or Parquet), validated before the warehouse sees them.

Each file is read as text, checked row by row (dates that exist, E.164 phones, emails, known
timezones, tiers, locales, stores and subscribers), and validated by a Great Expectations suite
over a pandas batch (GX cannot validate DuckDB here). By default a file with any bad row is
refused whole, with every bad row listed by line and reason; with ``quarantine`` the good rows
are upserted and the bad ones kept in the quarantine table. Either way a report is kept.
"""

from __future__ import annotations

import json
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import phonenumbers
import polars as pl
from email_validator import EmailNotValidError, validate_email

from careloop.errors import UserError
from careloop.files import write_private_text
from careloop.masking import mask_email, mask_phone
from careloop.settings import LOCALES, Settings
from warehouse.db import query_frame, register_frame

DATE_FORMAT = "%Y-%m-%d"
TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%:z",
    "%Y-%m-%d %H:%M:%S%:z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%SZ",
)


class LoadError(UserError, ValueError):
    """A file that cannot be loaded at all (unreadable, or a required column missing)."""


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    dates: tuple[str, ...] = ()
    past_dates: tuple[str, ...] = ()
    booleans: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()


ENTITIES = {
    "stores": Entity(
        "stores",
        "store_id",
        ("store_id", "name", "city", "region", "timezone", "manager_name", "manager_email"),
        ("store_id", "name", "city", "timezone", "manager_name", "manager_email"),
    ),
    "subscribers": Entity(
        "subscribers",
        "subscriber_id",
        (
            "subscriber_id",
            "name",
            "phone",
            "email",
            "birthday",
            "joined_on",
            "tier",
            "home_store_id",
            "timezone",
            "locale",
            "sms_consent",
            "email_consent",
            "voice_consent",
        ),
        (
            "subscriber_id",
            "name",
            "joined_on",
            "tier",
            "timezone",
            "locale",
            "sms_consent",
            "email_consent",
            "voice_consent",
        ),
        dates=("birthday", "joined_on"),
        past_dates=("birthday", "joined_on"),
        booleans=("sms_consent", "email_consent", "voice_consent"),
    ),
    "visits": Entity(
        "store_visits",
        "visit_id",
        ("visit_id", "subscriber_id", "store_id", "visited_at", "service_type"),
        ("visit_id", "subscriber_id", "store_id", "visited_at", "service_type"),
        timestamps=("visited_at",),
    ),
}


@dataclass
class LoadResult:
    load_id: str
    entity: str
    rows_read: int
    rows_loaded: int
    bad_rows: dict[int, list[str]] = field(default_factory=dict)  # line -> reasons
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return not self.bad_rows


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


def read_table(path: Path, entity: Entity) -> pl.DataFrame:
    """Every column as text, with the source line number (CSV: header is line 1)."""
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path).with_columns(pl.all().cast(pl.String))
            first_line = 1
        else:
            frame = pl.read_csv(path, infer_schema=False)
            first_line = 2
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from None
    missing = [c for c in entity.columns if c not in frame.columns]
    if missing:
        raise LoadError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame.select(entity.columns).with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in entity.columns
    )
    return frame.with_row_index("_line", offset=first_line).with_columns(
        pl.col("_line").cast(pl.Int64)
    )


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_phone(value: str | None) -> bool:
    if value is None:
        return True
    try:
        number = phonenumbers.parse(value)
    except phonenumbers.NumberParseException:
        return False
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return value == e164 and phonenumbers.is_valid_number(number)


def valid_email(value: str | None) -> bool:
    if value is None:
        return True
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@dataclass(frozen=True)
class Check:
    """One row-level rule: a derived boolean column GX expects to be all True."""

    name: str
    column: str
    reason: str


def typed_frame(
    frame: pl.DataFrame, entity: Entity, settings: Settings, today: date
) -> tuple[pl.DataFrame, list[Check]]:
    """Parse typed columns and add one ``ok_*`` column per row rule."""
    checks: list[Check] = []
    exprs: list[pl.Expr] = []

    def check(name: str, column: str, reason: str, ok: pl.Expr) -> None:
        checks.append(Check(name, column, reason))
        exprs.append(ok.fill_null(True).alias(f"ok_{name}"))

    for column in entity.dates:
        parsed = pl.col(column).str.to_date(DATE_FORMAT, strict=False)
        frame = frame.with_columns(parsed.alias(f"{column}__v"))
        check(
            f"{column}_date",
            column,
            "is not a real date (YYYY-MM-DD)",
            pl.col(column).is_null() | pl.col(f"{column}__v").is_not_null(),
        )
        if column in entity.past_dates:
            check(
                f"{column}_past",
                column,
                "is in the future",
                pl.col(f"{column}__v") <= pl.lit(today),
            )
    for column in entity.timestamps:
        parsed = pl.coalesce(
            [
                pl.col(column).str.to_datetime(f, time_zone="UTC", strict=False)
                for f in TIMESTAMP_FORMATS
            ]
        )
        frame = frame.with_columns(parsed.alias(f"{column}__v"))
        check(
            f"{column}_timestamp",
            column,
            "is not an ISO 8601 time with an offset",
            pl.col(f"{column}__v").is_not_null(),
        )
    for column in entity.booleans:
        check(
            f"{column}_bool",
            column,
            "must be true or false",
            pl.col(column).str.to_lowercase().is_in(["true", "false"]),
        )
    _row_rules(entity, check, settings)
    return frame.with_columns(exprs), checks


def _row_rules(
    entity: Entity, check: Callable[[str, str, str, pl.Expr], None], settings: Settings
) -> None:
    def member(column: str, values: set[str] | frozenset[str]) -> pl.Expr:
        return pl.col(column).is_in(list(values))

    def by_python(column: str, test: Callable[[str | None], bool]) -> pl.Expr:
        return pl.col(column).map_elements(test, return_dtype=pl.Boolean, skip_nulls=True)

    if "timezone" in entity.columns:
        check(
            "timezone",
            "timezone",
            "is not an IANA timezone",
            member("timezone", _known_timezones()),
        )
    if entity.name == "subscribers":
        check(
            "phone", "phone", "is not a valid E.164 phone number", by_python("phone", valid_phone)
        )
        check("email", "email", "is not a valid email address", by_python("email", valid_email))
        check(
            "tier",
            "tier",
            f"is not a tier ({', '.join(settings.tiers)})",
            member("tier", set(settings.tiers)),
        )
        check(
            "locale",
            "locale",
            f"is not a locale ({', '.join(LOCALES)})",
            member("locale", set(LOCALES)),
        )
    if entity.name == "stores":
        check(
            "manager_email",
            "manager_email",
            "is not a valid email address",
            by_python("manager_email", valid_email),
        )


# Reference checks run in DuckDB against the warehouse: (check, column, table, key).
REFERENCES = {
    "subscribers": [("home_store", "home_store_id", "stores", "store_id")],
    "store_visits": [
        ("store", "store_id", "stores", "store_id"),
        ("subscriber", "subscriber_id", "subscribers", "subscriber_id"),
    ],
}
REFERENCE_REASON = {"stores": "is not a known store", "subscribers": "is not a known subscriber"}


def add_reference_checks(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, entity: Entity
) -> tuple[pl.DataFrame, list[Check]]:
    references = REFERENCES.get(entity.name, [])
    if not references:
        return frame, []
    register_frame(con, "incoming", frame)
    flags = ", ".join(
        f"({column} IS NULL OR {column} IN (SELECT {key} FROM {table})) AS ok_{name}"
        for name, column, table, key in references
    )
    # Only the flags come back (a plain fetch: an open relation would block later registers).
    flagged = query_frame(con, f"SELECT _line, {flags} FROM incoming")
    con.unregister("incoming")
    checked = frame.join(flagged.cast({"_line": pl.Int64}), on="_line", how="left")
    return checked, [
        Check(name, column, REFERENCE_REASON[table]) for name, column, table, _ in references
    ]


def validate(
    frame: pl.DataFrame, entity: Entity, checks: list[Check]
) -> tuple[dict[int, list[str]], dict[str, Any]]:
    """Run the entity's GX suite over the batch; return bad lines with reasons, and the report."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
        ExpectColumnValuesToBeInSet,
    )
    from great_expectations.expectations.core.expect_column_values_to_be_unique import (
        ExpectColumnValuesToBeUnique,
    )
    from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
        ExpectColumnValuesToNotBeNull,
    )

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("load")
        .add_dataframe_asset(entity.name)
        .add_batch_definition_whole_dataframe("file")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=entity.name))
    suite.add_expectation(
        ExpectColumnValuesToBeUnique(
            column=entity.key, meta={"reason": "appears more than once", "column": entity.key}
        )
    )
    for column in entity.required:
        suite.add_expectation(
            ExpectColumnValuesToNotBeNull(
                column=column, meta={"reason": "is missing", "column": column}
            )
        )
    for item in checks:
        suite.add_expectation(
            ExpectColumnValuesToBeInSet(
                column=f"ok_{item.name}",
                value_set=[True],
                meta={"reason": item.reason, "column": item.column},
            )
        )
    source = frame.select(["_line", *entity.columns, *(f"ok_{c.name}" for c in checks)])
    result = batch.get_batch(batch_parameters={"dataframe": source.to_pandas()}).validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_line"]},
    )
    values = {row["_line"]: row for row in source.iter_rows(named=True)}
    bad: dict[int, list[str]] = {}
    summary = []
    for outcome in result.results:
        config = outcome.expectation_config
        assert config is not None  # GX fills it for every result of a suite run
        meta = config.meta or {}
        unexpected = outcome.result.get("unexpected_index_list") or []
        summary.append(
            {
                "expectation": config.type,
                "column": meta.get("column"),
                "success": bool(outcome.success),
                "unexpected": len(unexpected),
            }
        )
        for hit in unexpected:
            line = int(hit["_line"])
            column = str(meta["column"])
            value = values[line][column]
            shown = "" if value is None else f" {shown_value(column, value)!r}"
            bad.setdefault(line, []).append(f"{column}{shown} {meta['reason']}")
    report = {
        "entity": entity.name,
        "success": bool(result.success),
        "statistics": dict(result.statistics),
        "expectations": summary,
    }
    return bad, report


def load_file(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity_name: str,
    path: Path,
    *,
    quarantine: bool = False,
    today: date | None = None,
) -> LoadResult:
    """Validate then upsert by id; refuse the whole file on any bad row unless quarantining."""
    if entity_name not in ENTITIES:
        raise LoadError(f"unknown entity {entity_name!r}; use {', '.join(ENTITIES)}")
    entity = ENTITIES[entity_name]
    frame, checks = typed_frame(
        read_table(path, entity), entity, settings, today or datetime.now(UTC).date()
    )
    frame, references = add_reference_checks(con, frame, entity)
    bad, report = validate(frame, entity, checks + references)
    load_id = f"{entity_name}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    result = LoadResult(
        load_id,
        entity_name,
        frame.height,
        0,
        bad,
        {**report, "source": str(path), "bad_rows": {str(k): v for k, v in sorted(bad.items())}},
    )
    mode = "quarantine" if quarantine else "refuse"
    con.execute("BEGIN TRANSACTION")
    try:
        if quarantine or not bad:
            good = frame.filter(~pl.col("_line").is_in(list(bad)))
            result.rows_loaded = _upsert(con, entity, good)
            _quarantine(con, entity, frame.filter(pl.col("_line").is_in(list(bad))), bad, load_id)
        con.execute(
            "INSERT INTO load_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [
                load_id,
                entity_name,
                str(path),
                mode,
                result.rows_read,
                result.rows_loaded,
                len(bad),
                not bad,
                json.dumps(result.report, default=str),
            ],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    _write_report(settings, result)
    if bad and not quarantine:
        raise LoadRefusedError(result)
    return result


def _typed_columns(entity: Entity) -> list[pl.Expr]:
    exprs = []
    for column in entity.columns:
        if column in entity.dates or column in entity.timestamps:
            exprs.append(pl.col(f"{column}__v").alias(column))
        elif column in entity.booleans:
            exprs.append((pl.col(column).str.to_lowercase() == "true").alias(column))
        else:
            exprs.append(pl.col(column))
    return exprs


def _upsert(con: duckdb.DuckDBPyConnection, entity: Entity, good: pl.DataFrame) -> int:
    if good.is_empty():
        return 0
    register_frame(con, "good_rows", good.select(_typed_columns(entity)))
    columns = ", ".join(entity.columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in entity.columns if c != entity.key)
    con.execute(
        f"INSERT INTO {entity.name} ({columns}) SELECT {columns} FROM good_rows "
        f"ON CONFLICT ({entity.key}) DO UPDATE SET {updates}"
    )
    con.unregister("good_rows")
    return good.height


def _quarantine(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    rows: pl.DataFrame,
    bad: dict[int, list[str]],
    load_id: str,
) -> None:
    if rows.is_empty():
        return
    records = [
        (
            load_id,
            entity.name,
            row["_line"],
            json.dumps({c: row[c] for c in entity.columns}, ensure_ascii=False),
            bad[row["_line"]],
        )
        for row in rows.iter_rows(named=True)
    ]
    con.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, now())", records)


CONTACT_COLUMNS = frozenset({"phone", "email", "manager_email"})


def shown_value(column: str, value: object) -> object:
    """A refused value as reasons show it: contact data masked (the original stays in the
    quarantine table, never in a log, a printed reason or a report)."""
    text = str(value)
    if column in CONTACT_COLUMNS:
        return mask_email(text) if "email" in column else mask_phone(text)
    return value


def _write_report(settings: Settings, result: LoadResult) -> None:
    path = settings.reports_dir / "validation" / f"{result.load_id}.json"
    write_private_text(path, json.dumps(result.report, ensure_ascii=False, indent=2, default=str))
