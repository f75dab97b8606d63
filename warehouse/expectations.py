"""The Great Expectations suite a file must pass before the warehouse sees it.

Expectations run over the raw text columns as read (not-null, uniqueness, plain ids, E.164
and email patterns, real dates and times, allowed tiers, locales and timezones), and over
parsed dates for "not in the future". What GX cannot know is added as a boolean column per
rule and expected true: numbering plans (phonenumbers), address syntax (email-validator) and
ids the warehouse must already hold. GX validates pandas batches (it cannot validate DuckDB
here), one chunk of the file at a time (``Gate``), every row of every chunk; the chunks'
results are added up (``merged``) and kept with the load report.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

import polars as pl

from core.files import PLAIN_ID, PLAIN_ID_RULE
from core.masking import mask_email, mask_phone, mask_text
from core.settings import LOCALES, Settings
from warehouse.entities import REGION_NAME, REGION_RULE, Column, Entity

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


REPEATED = "appears more than once"  # an id's reason, within a batch or across the file


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
            REPEATED,
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
PLAIN_ID_REASON = f"is not a plain id ({PLAIN_ID_RULE})"
PATTERNS = {
    "id": (PLAIN_ID, PLAIN_ID_REASON),
    "ref": (PLAIN_ID, PLAIN_ID_REASON),
    "region": (REGION_NAME, f"is not a region's name ({REGION_RULE})"),
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


# The longest text a field may hold: names, cities and a visit's service as people write them
# fit with room to spare. A 2-million-character name loaded, and its greeting went out as a
# 13,000-part SMS.
TEXT_MAX = 100


def _type_rules(column: Column, settings: Settings, today: date) -> list[Rule]:
    import great_expectations as gx

    e: Any = gx.expectations
    name = column.name
    rules = []
    if column.type == "text":
        too_long = e.ExpectColumnValueLengthsToBeBetween(column=name, max_value=TEXT_MAX)
        rules.append(Rule(too_long, name, f"is longer than {TEXT_MAX} characters"))
    if column.type in PATTERNS:
        regex, reason = PATTERNS[column.type]
        rules.append(Rule(e.ExpectColumnValuesToMatchRegex(column=name, regex=regex), name, reason))
    if column.type == "timestamp":  # the shape is right; is it a real moment (no 25:00)?
        after_today = e.ExpectColumnValuesToBeBetween(
            column=f"{name}__earliest",
            max_value=_end_of_day_utc(today, settings.zone),
            strict_max=True,  # the next day's first moment is no longer today
        )
        rules += [
            Rule(
                e.ExpectColumnValuesToBeDateutilParseable(column=name), name, "is not a real time"
            ),
            Rule(after_today, name, "is in the future"),
        ]
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


def _end_of_day_utc(today: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The business day's end, as UTC without a zone (as ``{name}__earliest`` is)."""
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=zone)
    return end.astimezone(UTC).replace(tzinfo=None)


class Gate:
    """The suite in one ephemeral GX context, validating one batch (a chunk of the file) at a
    time: built once per load, as building it costs more than a small batch's validation."""

    def __init__(self, entity: Entity, rules: list[Rule]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.batch = (
            context.data_sources.add_pandas("load")
            .add_dataframe_asset(entity.table)
            .add_batch_definition_whole_dataframe("file")
        )
        self.suite = context.suites.add(gx.ExpectationSuite(name=entity.kind))
        for rule in rules:
            self.suite.add_expectation(rule.expectation)
        self.entity, self.rules = entity, rules

    def run(self, frame: pl.DataFrame) -> Any:
        return self.batch.get_batch(
            batch_parameters={"dataframe": _pandas(frame, self.entity)}
        ).validate(
            self.suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_line"]},
        )


# Two unused categories that fail any date format or time check: see ``_pandas``.
UNUSED_DATES = ["not a date", "not a date either"]


def _pandas(frame: pl.DataFrame, entity: Entity) -> Any:
    """The batch as GX's pandas engine reads it fastest: text columns as categoricals, so
    pandas hashes each column once in C and a per-value check (``strptime`` for a date
    format, 16 µs a call) runs once per distinct value, still deciding every row. A date or
    time column gets two unused categories that both fail its check: pandas returns a plain
    array only when its mapping is not one-to-one, and GX cannot negate a categorical."""
    table = frame.to_pandas()
    for name in entity.names:
        column = table[name].astype("category")
        if name in entity.of_type("date") or name in entity.of_type("timestamp"):
            column = column.cat.add_categories(UNUSED_DATES)
        table[name] = column
    return table


def validate(frame: pl.DataFrame, gate: Gate) -> Validation:
    """Run the suite over one batch; every failing row by line, with its reasons."""
    entity, rules = gate.entity, gate.rules
    result = gate.run(frame)
    failing: list[tuple[Rule, list[int]]] = []
    summary = []
    # GX does not keep the suite's order in its results (an expectation that raised comes
    # first): each result is found by its expectation's id.
    outcomes = {outcome.expectation_config.id: outcome for outcome in result.results}
    for rule in rules:
        outcome = outcomes[rule.expectation.id]
        unexpected = outcome.result.get("unexpected_index_list") or []
        failing.append((rule, [int(hit["_line"]) for hit in unexpected]))
        summary.append(
            {
                "expectation": outcome.expectation_config.type,
                "column": rule.column,
                "success": bool(outcome.success),
                "unexpected": int(outcome.result.get("unexpected_count") or len(unexpected)),
            }
        )
    return Validation(
        _reasons(frame, entity, failing),
        summary,
        bool(result.success),
        dict(result.statistics),
        _kept(result.to_json_dict()),
    )


def _reasons(
    frame: pl.DataFrame, entity: Entity, failing: list[tuple[Rule, list[int]]]
) -> dict[int, list[str]]:
    """One reason per bad field, in the file's column order; only the bad rows' values are
    looked up (a dict of every row held half a large load's memory)."""
    lines = sorted({line for _, hits in failing for line in hits})
    bad = frame.filter(pl.col("_line").is_in(lines)).select("_line", *entity.names)
    values = {row["_line"]: row for row in bad.iter_rows(named=True)}
    by_line: dict[int, dict[str, str]] = {}
    for rule, hits in failing:
        for line in hits:
            value = values[line][rule.column]
            shown = "" if value is None else f" {shown_value(rule.column, value)!r}"
            by_line.setdefault(line, {}).setdefault(
                rule.column, f"{rule.column}{shown} {rule.reason}"
            )
    order = {name: i for i, name in enumerate(entity.names)}
    return {
        line: [reasons[c] for c in sorted(reasons, key=order.__getitem__)]
        for line, reasons in sorted(by_line.items())
    }


COUNTS = ("element_count", "missing_count", "unexpected_count")
BATCHES_NOTE = (
    "the file was validated in batches and the counts added up; "
    "expect_column_values_to_be_unique sees repeats within a batch, ok_once across the file"
)


def merged(first: Validation, later: Validation) -> Validation:
    """Two batches' validations as one: bad rows together, counts added, an expectation
    successful only if it was in both; GX's result likewise (its kept line lists stay cut)."""
    summary = [
        a
        | {
            "success": a["success"] and b["success"],
            "unexpected": a["unexpected"] + b["unexpected"],
        }
        for a, b in zip(first.summary, later.summary, strict=True)
    ]
    gx_result = _merged_gx(first.gx_result, later.gx_result)
    return Validation(
        first.bad_rows | later.bad_rows,
        summary,
        first.success and later.success,
        gx_result["statistics"],
        gx_result,
    )


def _merged_gx(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    later_by_id = {r["expectation_config"]["id"]: r for r in later["results"]}
    results = [
        _merged_outcome(a, later_by_id[a["expectation_config"]["id"]]) for a in first["results"]
    ]
    good = sum(1 for r in results if r["success"])
    statistics = first["statistics"] | {
        "successful_expectations": good,
        "unsuccessful_expectations": len(results) - good,
        "success_percent": 100.0 * good / len(results) if results else None,
    }
    meta = first.get("meta", {}) | {
        "batches": first.get("meta", {}).get("batches", 1) + 1,
        "batches_note": BATCHES_NOTE,
    }
    return first | {
        "results": results,
        "statistics": statistics,
        "success": all(r["success"] for r in results),
        "meta": meta,
    }


def _merged_outcome(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    a, b = first.get("result", {}), later.get("result", {})
    result = dict(a)
    for key in COUNTS:
        if key in a or key in b:
            result[key] = (a.get(key) or 0) + (b.get(key) or 0)
    for key in INDEX_LISTS:
        if key in a or key in b:
            result[key] = ((a.get(key) or []) + (b.get(key) or []))[:KEPT_LIST_ITEMS]
    result.pop("unexpected_index_query", None)  # a query over one batch's index only
    result |= {k: v for k, v in _percents(result).items() if k in result}
    return first | {"success": bool(first["success"] and later["success"]), "result": result}


def _percents(result: dict[str, Any]) -> dict[str, Any]:
    """GX's percentages, recomputed over every batch's counts."""
    if "element_count" not in result or "unexpected_count" not in result:
        return {}
    total, missing = result["element_count"], result.get("missing_count") or 0
    bad, present = result["unexpected_count"], total - missing
    return {
        "unexpected_percent": 100.0 * bad / present if present else 0.0,
        "unexpected_percent_total": 100.0 * bad / total if total else 0.0,
        "unexpected_percent_nonmissing": 100.0 * bad / present if present else 0.0,
        "missing_percent": 100.0 * missing / total if total else 0.0,
    }


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


SHOWN_MAX = 100  # characters of a refused value a reason shows (a name fits whole)


def shown_value(column: str, value: object) -> object:
    """A refused value as reasons show it: contact data masked (the original stays in the
    quarantine table, never in a log, a printed reason or a report)."""
    text = str(value)
    if column in CONTACT_COLUMNS:
        return mask_email(text) if "email" in column else mask_phone(text)
    # operators often key customers by their number (MSISDN), written as people write it
    if column == "subscriber_id" and _is_phone_number(text):
        return mask_phone(re.sub(r"[^\d+]", "", text.strip().removesuffix(".0")))
    masked = mask_text(text)  # a number or an address inside another column's text
    if len(masked) > SHOWN_MAX:  # its start is enough to find it by; the line names the row
        return f"{masked[:SHOWN_MAX]}… ({len(text):,} characters)"
    return value if masked == text else masked


def _is_phone_number(text: str) -> bool:
    """A number as people and spreadsheets write it, masked when in doubt: valid as a Chinese
    number ("13800138000") or, its '+' left out, as an international one ("447911123456",
    an MSISDN), or a Chinese mobile's shape (1 and ten digits: ranges newer than the
    library's metadata); a spreadsheet's ".0" taken off. Other customer numbers
    ("20240001") stay readable."""
    import phonenumbers

    written = text.strip().removesuffix(".0")
    digits = re.sub(r"[\s().-]", "", written)
    if re.fullmatch(r"\+?861?\d{10}|1\d{10}", digits):
        return True
    for candidate in (written, "+" + digits.lstrip("+")):
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(candidate, "CN")):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False
