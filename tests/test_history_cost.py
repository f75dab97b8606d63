"""A day's work must not grow with what earlier days stored (issue: a year at 10 million).

Timings would be flaky; these tests look at what the database is asked to do instead: the
query plan of every deduplicating insert, and the rows a dispatch batch touches.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from campaigns.planning import OUTBOX_CONFLICT
from feedback.ingest import EVALUATION_CONFLICT

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("campaigns", "cases", "feedback", "insights", "segments", "service", "demo", "flows")
NESTED_LOOP = re.compile(r"NL_JOIN|Nl Join|Nested Loop|Blockwise", re.IGNORECASE)


def unique_keys(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Tables and how many unique keys (primary key included) each has."""
    rows = con.execute(
        "SELECT table_name, count(*) FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') GROUP BY ALL"
    ).fetchall()
    return {str(table): int(n) for table, n in rows}


def plan_of(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    return "\n".join(str(row[1]) for row in con.execute(f"EXPLAIN {sql}").fetchall())


@pytest.mark.parametrize(
    ("table", "conflict"),
    [("care_actions", OUTBOX_CONFLICT), ("evaluations", EVALUATION_CONFLICT)],
)
def test_deduplicating_insert_is_a_hash_join(
    con: duckdb.DuckDBPyConnection, table: str, conflict: str
) -> None:
    # The clause the code uses, on the table it writes: a bare ON CONFLICT on a table with two
    # unique keys plans a nested-loop join on "a = a OR b = b" (135 s for 72,551 new rows
    # against 216,169).
    sql = f"INSERT INTO {table} SELECT * FROM {table} {conflict}"
    plan = plan_of(con, sql)
    assert "HASH_JOIN" in plan.upper().replace(" ", "_"), plan
    assert not NESTED_LOOP.search(plan), plan
    bare = plan_of(con, f"INSERT INTO {table} SELECT * FROM {table} ON CONFLICT DO NOTHING")
    assert NESTED_LOOP.search(bare), "the check above would no longer catch the bare form"


def inserts_with_bare_conflict(text: str) -> list[str]:
    """Tables that ``INSERT INTO t ... ON CONFLICT DO`` names with no conflict target."""
    found = []
    for match in re.finditer(r"INSERT INTO\s+(\w+)", text, re.IGNORECASE):
        statement = re.split(r'"""|INSERT INTO|;', text[match.end() : match.end() + 3000])[0]
        if re.search(r"ON CONFLICT\s+DO", statement, re.IGNORECASE):
            found.append(match.group(1))
    return found


def test_no_bare_conflict_on_a_table_with_two_unique_keys(
    con: duckdb.DuckDBPyConnection,
) -> None:
    several = {table for table, n in unique_keys(con).items() if n > 1}
    assert {"care_actions", "evaluations"} <= several
    offenders = [
        f"{path.relative_to(ROOT)}: INSERT INTO {table}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for table in inserts_with_bare_conflict(path.read_text(encoding="utf-8"))
        if table in several
    ]
    assert offenders == []


def test_the_source_scan_sees_a_bare_conflict() -> None:
    source = '"""\nINSERT INTO care_actions SELECT * FROM plan_final\nON CONFLICT DO NOTHING"""'
    assert inserts_with_bare_conflict(source) == ["care_actions"]
    named = source.replace("CONFLICT DO", "CONFLICT (idempotency_key) DO")
    assert inserts_with_bare_conflict(named) == []
