"""Run the tests a rule's YAML declares, in the style of dbt's schema tests.

``tests`` may hold ``unique`` and ``not_null`` (lists of columns), ``accepted_values``
(column -> allowed values) and ``examples``: small input tables, an as-of date, optional
parameters, and the expected members. Each example runs in a fresh in-memory warehouse, so a
rule's tests never depend on whatever data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb

from segments.registry import SegmentError, SegmentRule, check_rule, materialize
from warehouse.db import migrate
from warehouse.ratings import rebuild_ratings

EXTRA_TABLES = ("evaluations", "care_actions", "opt_outs", "model_scores")
# Columns a test may leave out: filled with plain, valid values.
ROW_DEFAULTS: dict[str, dict[str, Any]] = {
    "stores": {
        "name": "Store",
        "city": "Shanghai",
        "region": "East",
        "timezone": "Asia/Shanghai",
        "manager_name": "Manager",
        "manager_email": "manager@example.com",
    },
    "subscribers": {
        "name": "Customer",
        "phone": None,
        "email": None,
        "birthday": None,
        "joined_on": date(2015, 1, 1),
        "tier": "standard",
        "home_store_id": "ST1",
        "timezone": "Asia/Shanghai",
        "locale": "zh-CN",
        "sms_consent": True,
        "email_consent": True,
        "voice_consent": True,
    },
    "store_visits": {"store_id": "ST1", "service_type": "repair"},
}


@dataclass(frozen=True)
class TestResult:
    rule: str
    test: str
    passed: bool
    detail: str = ""


def run_rule_tests(rule: SegmentRule) -> list[TestResult]:
    tests = rule.tests or {}
    where = rule.path.with_suffix(".yml")
    if not isinstance(tests, dict):  # this rule's tests fail, and the others' still run
        return [TestResult(rule.name, "tests", False, f"{where}: tests must be a mapping")]
    unknown = sorted(set(tests) - {"unique", "not_null", "accepted_values", "examples"})
    if unknown:
        return [TestResult(rule.name, "tests", False, f"{where}: unknown test kind(s) {unknown}")]
    if not isinstance(tests.get("examples") or [], list):
        return [TestResult(rule.name, "tests", False, f"{where}: examples must be a list")]
    results = [_compiles(rule)]
    for number, example in enumerate(tests.get("examples") or [], start=1):
        results += _run_example(rule, tests, number, example)
    return results


def _compiles(rule: SegmentRule) -> TestResult:
    """The rule's SQL against the warehouse's schema, even where it has no example: a rule of
    bad SQL and no examples passed its tests, and failed only when a campaign ran it."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        migrate(con)
        check_rule(con, rule)
        return TestResult(rule.name, "compiles", True)
    except SegmentError as exc:
        return TestResult(rule.name, "compiles", False, exc.reason)
    finally:
        con.close()


def _run_example(
    rule: SegmentRule, tests: dict[str, Any], number: int, example: dict[str, Any]
) -> list[TestResult]:
    where = rule.path.with_suffix(".yml")
    if not isinstance(example, dict):  # this rule's example fails, and the others still run
        return [TestResult(rule.name, f"example {number}", False, f"{where}: not a mapping")]
    label = f"example {number}: {example.get('name', '')}".rstrip(": ")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        migrate(con)
        for table, rows in (example.get("given") or {}).items():
            _insert(con, table, rows)
        rebuild_ratings(con)  # the given evaluations' ratings, as collect would have kept them
        as_of = _as_date(example.get("as_of"), label)
        materialize(con, rule, as_of, "members", example.get("params") or {})
        got = sorted(r[0] for r in con.execute("SELECT subscriber_id FROM members").fetchall())
        expected = sorted(str(m) for m in example.get("expect") or [])
        results = [
            TestResult(
                rule.name,
                label,
                got == expected,
                "" if got == expected else f"expected {expected}, got {got}",
            )
        ]
        results += _schema_tests(con, rule.name, tests, label)
        return results
    except (duckdb.Error, SegmentError, ValueError) as exc:
        return [TestResult(rule.name, label, False, str(exc).splitlines()[0])]
    except (TypeError, AttributeError, KeyError) as exc:  # the YAML's shape: a list for a map
        return [TestResult(rule.name, label, False, f"{where}: malformed ({exc})")]
    finally:
        con.close()


def _as_date(value: object, label: str) -> date:
    if isinstance(value, date):
        return value
    raise ValueError(f"{label}: as_of must be a date (YYYY-MM-DD), got {value!r}")


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if table not in ROW_DEFAULTS and table not in EXTRA_TABLES:
        tables = ", ".join([*ROW_DEFAULTS, *EXTRA_TABLES])
        raise ValueError(
            f"given: unknown table {table!r}: examples fill the warehouse's tables ({tables}), "
            "which the rules' views read"
        )
    for row in rows:
        full = {**ROW_DEFAULTS.get(table, {}), **row}
        columns = ", ".join(full)
        marks = ", ".join("?" * len(full))
        con.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(full.values()))


def _schema_tests(
    con: duckdb.DuckDBPyConnection, rule: str, tests: dict[str, Any], label: str
) -> list[TestResult]:
    results = []
    for column in tests.get("unique") or []:
        dup = con.execute(f'SELECT count(*) - count(DISTINCT "{column}") FROM members').fetchone()
        bad = int(dup[0]) if dup else 0
        results.append(
            TestResult(
                rule,
                f"{label} / unique {column}",
                bad == 0,
                f"{bad} duplicate value(s)" if bad else "",
            )
        )
    for column in tests.get("not_null") or []:
        nulls = con.execute(f'SELECT count(*) FROM members WHERE "{column}" IS NULL').fetchone()
        bad = int(nulls[0]) if nulls else 0
        results.append(
            TestResult(
                rule,
                f"{label} / not_null {column}",
                bad == 0,
                f"{bad} NULL value(s)" if bad else "",
            )
        )
    for column, allowed in (tests.get("accepted_values") or {}).items():
        rows = con.execute(
            f'SELECT DISTINCT "{column}" FROM members WHERE "{column}" IS NOT NULL'
        ).fetchall()
        outside = sorted(str(r[0]) for r in rows if r[0] not in allowed)
        results.append(
            TestResult(
                rule,
                f"{label} / accepted_values {column}",
                not outside,
                f"not accepted: {outside}" if outside else "",
            )
        )
    return results
