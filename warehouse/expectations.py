"""The Great Expectations suite a file must pass before the warehouse sees it.

Expectations run over the raw text columns as read (not-null, uniqueness, E.164 and email
patterns, real dates and times, allowed tiers, locales and timezones), and over parsed dates
for "not in the future". What GX cannot know is added as a boolean column per rule and expected
true: numbering plans (phonenumbers), address syntax (email-validator) and ids the warehouse
must already hold. GX validates a pandas batch (it cannot validate DuckDB here); its own
result is kept with the load report.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache
from typing import Any

import polars as pl

from core.masking import mask_email, mask_phone
from core.settings import LOCALES, Settings
from warehouse.entities import Column, Entity

E164 = r"^\+[1-9][0-9]{6,14}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ISO_TIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
KEPT_LIST_ITEMS = 20  # of each unexpected-value list in the kept GX result


@dataclass(frozen=True)
class Rule:
    """One expectation and what a failure of it means for a row."""

    expectation: Any  # a great_expectations Expectation
    column: str  # the file's column the reason names
    reason: str


@dataclass(frozen=True)
class DerivedCheck:
    """A rule GX cannot express: a boolean column ``ok_{name}``, null or true when fine."""

    name: str
    column: str
    reason: str


@dataclass(frozen=True)
class Validation:
    bad_rows: dict[int, list[str]]  # line -> one reason per bad field
    summary: list[dict[str, Any]]  # per expectation: type, column, success, unexpected
    success: bool
    statistics: dict[str, Any]
    gx_result: dict[str, Any]  # GX's own result, long value lists cut


@cache
def known_timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def suite_rules(
    entity: Entity, settings: Settings, today: date, derived: list[DerivedCheck]
) -> list[Rule]:
    """Format rules first: a field gets the first reason that applies to it."""
    import great_expectations as gx

    e: Any = gx.expectations  # typed loosely: GX does not declare its exports
    rules = [
        Rule(
            e.ExpectColumnValuesToBeUnique(column=entity.key),
            entity.key,
            "appears more than once",
        )
    ]
    for column in entity.columns:
        if column.required:
            rules.append(
                Rule(
                    e.ExpectColumnValuesToNotBeNull(column=column.name),
                    column.name,
                    "is missing",
                )
            )
        rules += _type_rules(column, settings, today)
    rules += [
        Rule(
            e.ExpectColumnValuesToBeInSet(column=f"ok_{c.name}", value_set=[True]),
            c.column,
            c.reason,
        )
        for c in derived
    ]
    return rules


# Text a column of the type must match, and what a row that does not is told.
PATTERNS = {
    "timestamp": (ISO_TIME, "is not an ISO 8601 time (2026-02-28T10:15:00+08:00)"),
    "boolean": ("^(?i:true|false)$", "must be true or false"),
    "phone": (E164, "is not an E.164 phone number (+8613812345678)"),
    "email": (EMAIL, "is not a valid email address"),
}


def _allowed(column_type: str, settings: Settings) -> tuple[list[str], str] | None:
    """The values a column of the type may hold, and the reason given otherwise."""
    if column_type == "timezone":
        return known_timezones(), "is not an IANA timezone"
    if column_type == "tier":
        return list(settings.tiers), f"is not a tier ({', '.join(settings.tiers)})"
    if column_type == "locale":
        return list(LOCALES), f"is not a locale ({', '.join(LOCALES)})"
    return None


def _type_rules(column: Column, settings: Settings, today: date) -> list[Rule]:
    import great_expectations as gx

    e: Any = gx.expectations
    name = column.name
    rules = []
    if column.type in PATTERNS:
        regex, reason = PATTERNS[column.type]
        rules.append(Rule(e.ExpectColumnValuesToMatchRegex(column=name, regex=regex), name, reason))
    if column.type == "timestamp":  # the shape is right; is it a real moment (no 25:00)?
        rules.append(
            Rule(e.ExpectColumnValuesToBeDateutilParseable(column=name), name, "is not a real time")
        )
    if column.type == "date":
        real = e.ExpectColumnValuesToMatchStrftimeFormat(column=name, strftime_format="%Y-%m-%d")
        past = e.ExpectColumnValuesToBeBetween(
            column=f"{name}__parsed", max_value=datetime.combine(today, time.max)
        )
        rules += [
            Rule(real, name, "is not a real date (YYYY-MM-DD)"),
            Rule(past, name, "is in the future"),
        ]
    allowed = _allowed(column.type, settings)
    if allowed:
        values, reason = allowed
        rules.append(
            Rule(e.ExpectColumnValuesToBeInSet(column=name, value_set=values), name, reason)
        )
    return rules


def validate(frame: pl.DataFrame, entity: Entity, rules: list[Rule]) -> Validation:
    """Run the suite over the batch; every failing row by line, with its reasons."""
    result = _run_suite(frame, entity, rules)
    values = {
        row["_line"]: row for row in frame.select("_line", *entity.names).iter_rows(named=True)
    }
    by_line: dict[int, dict[str, str]] = {}
    summary = []
    for rule, outcome in zip(rules, result.results, strict=True):
        unexpected = outcome.result.get("unexpected_index_list") or []
        summary.append(
            {
                "expectation": outcome.expectation_config.type,
                "column": rule.column,
                "success": bool(outcome.success),
                "unexpected": int(outcome.result.get("unexpected_count") or len(unexpected)),
            }
        )
        for hit in unexpected:
            line = int(hit["_line"])
            value = values[line][rule.column]
            shown = "" if value is None else f" {shown_value(rule.column, value)!r}"
            by_line.setdefault(line, {}).setdefault(
                rule.column, f"{rule.column}{shown} {rule.reason}"
            )
    order = {name: i for i, name in enumerate(entity.names)}
    return Validation(
        {
            line: [reasons[c] for c in sorted(reasons, key=order.__getitem__)]
            for line, reasons in sorted(by_line.items())
        },
        summary,
        bool(result.success),
        dict(result.statistics),
        _kept(result.to_json_dict()),
    )


def _run_suite(frame: pl.DataFrame, entity: Entity, rules: list[Rule]) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("load")
        .add_dataframe_asset(entity.table)
        .add_batch_definition_whole_dataframe("file")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=entity.kind))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    return batch.get_batch(batch_parameters={"dataframe": frame.to_pandas()}).validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_line"]},
    )


# The value lists in GX's result: the rows' values stay in the quarantine table, never in a
# report, since they may be phone numbers and addresses.
VALUE_LISTS = frozenset({"unexpected_list", "partial_unexpected_list", "partial_unexpected_counts"})
INDEX_LISTS = frozenset({"unexpected_index_list", "partial_unexpected_index_list"})


def _kept(value: Any) -> Any:
    """GX's result as the report keeps it: no values, and the first lines of each failing
    expectation (its counts stay whole), so a file of a million bad rows stays readable."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in VALUE_LISTS:
                continue
            if key in INDEX_LISTS and isinstance(item, list):
                item = [{"_line": hit.get("_line")} for hit in item[:KEPT_LIST_ITEMS]]
            kept[key] = _kept(item)
        return kept
    if isinstance(value, list):
        return [_kept(v) for v in value]
    if isinstance(value, str) and len(value) > 2000:
        return value[:2000] + "…"
    return value


CONTACT_COLUMNS = frozenset({"phone", "email", "manager_email", "contact_email"})


def shown_value(column: str, value: object) -> object:
    """A refused value as reasons show it: contact data masked (the original stays in the
    quarantine table, never in a log, a printed reason or a report)."""
    text = str(value)
    if column in CONTACT_COLUMNS:
        return mask_email(text) if "email" in column else mask_phone(text)
    return value
