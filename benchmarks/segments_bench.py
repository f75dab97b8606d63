"""Segment rules on a 10-million-subscriber warehouse, next to a plain DuckDB scan of the same
columns and a straightforward pandas implementation of the same rules.

Targets: each rule within 2x of the plain scan, at least 10x faster than pandas, peak memory
under 2 GB. Run: ``python -m benchmarks.segments_bench`` (``make bench``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks.harness import Measurement, emit, measure

AS_OF = date(2026, 2, 28)  # not a leap year: Feb 29 births and joins count today
MILESTONES = [1, 3, 5]
REPEATS = 5


def _median_seconds(run: Callable[[], int]) -> tuple[float, int]:
    run()  # warm-up: the first run pays for loading column segments
    times, rows = [], 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def child(variant: str, db_path: str) -> None:
    from segments.registry import load_rules, materialize

    con = duckdb.connect(db_path, read_only=True)
    rules = load_rules()
    runs: dict[str, Callable[[], int]] = {
        # Every value of the columns a rule reads (min/max would come from column statistics).
        "birthday_scan": lambda: _scan(con, "birthday"),
        "tenure_scan": lambda: _scan(con, "joined_on"),
        "birthday_rule": lambda: materialize(con, rules["birthday"], AS_OF, "m"),
        "tenure_rule": lambda: materialize(con, rules["tenure"], AS_OF, "m"),
        "birthday_pandas": lambda: len(pandas_birthday(load_frame(con))),
        "tenure_pandas": lambda: len(pandas_tenure(load_frame(con))),
    }
    seconds, rows = _median_seconds(runs[variant])
    emit(seconds, rows=rows)


def _scan(con: duckdb.DuckDBPyConnection, column: str) -> int:
    row = con.execute(
        f"SELECT count(*), sum(length(subscriber_id)), sum(epoch({column})) FROM subscribers"
    ).fetchall()[0]
    return int(row[0])


def load_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT subscriber_id, birthday, joined_on FROM subscribers").fetch_df()


def _anniversary_today(dates: pd.Series, as_of: date) -> pd.Series:
    month, day = dates.dt.month, dates.dt.day
    same_day = (month == as_of.month) & (day == as_of.day)
    leap = as_of.year % 4 == 0 and (as_of.year % 100 != 0 or as_of.year % 400 == 0)
    feb29_on_28 = (month == 2) & (day == 29) & (as_of.month == 2) & (as_of.day == 28) & (not leap)
    return same_day | feb29_on_28


def pandas_birthday(frame: pd.DataFrame) -> pd.DataFrame:
    birthday = pd.to_datetime(frame["birthday"])
    mask = birthday.notna() & (birthday < pd.Timestamp(AS_OF)) & _anniversary_today(birthday, AS_OF)
    return frame[mask]


def pandas_tenure(frame: pd.DataFrame) -> pd.DataFrame:
    joined = pd.to_datetime(frame["joined_on"])
    years = AS_OF.year - joined.dt.year
    milestone = years.isin(MILESTONES) | ((years >= 5) & (years % 5 == 0))
    return frame[(years >= 1) & milestone & _anniversary_today(joined, AS_OF)]


def ensure_warehouse(path: Path, subscribers: int) -> None:
    """Build the benchmark warehouse once; reuse it while it has the right size."""
    from demo.data import build_demo_data
    from warehouse.db import connect

    con = connect(path)
    try:
        count = con.execute("SELECT count(*) FROM subscribers").fetchall()[0][0]
        if count != subscribers:
            print(
                f"building a {subscribers:,}-subscriber warehouse in {path} (once)...", flush=True
            )
            build_demo_data(con, subscribers=subscribers, seed=7, until=AS_OF, visits=False)
            con.execute("CHECKPOINT")
    finally:
        con.close()


def report(results: dict[str, Measurement]) -> list[str]:
    lines = [f"{'variant':<16} {'median s':>9} {'peak MB':>8} {'rows':>8}"]
    lines += [
        f"{m.name:<16} {m.seconds:>9.3f} {m.peak_mb:>8.0f} {m.detail['rows']:>8}"
        for m in results.values()
    ]
    for rule in ("birthday", "tenure"):
        scan = results[f"{rule}_scan"]
        duck, pandas = results[f"{rule}_rule"], results[f"{rule}_pandas"]
        agree = duck.detail["rows"] == pandas.detail["rows"]
        lines.append(
            f"{rule}: {duck.seconds / scan.seconds:.2f}x the plain scan (target <= 2), "
            f"{pandas.seconds / duck.seconds:.1f}x faster than pandas (target >= 10), "
            f"peak {duck.peak_mb:.0f} MB (target < 2048); members agree with pandas: {agree}"
        )
    return lines


def main(subscribers: int, home: Path) -> None:
    path = home / f"bench-{subscribers}.duckdb"
    home.mkdir(parents=True, exist_ok=True)
    ensure_warehouse(path, subscribers)
    variants = [
        "birthday_scan",
        "birthday_rule",
        "birthday_pandas",
        "tenure_scan",
        "tenure_rule",
        "tenure_pandas",
    ]
    results = {v: measure("benchmarks.segments_bench", v, str(path)) for v in variants}
    text = "\n".join(report(results))
    print(text)
    (home / "segments-bench.txt").write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and not sys.argv[1].isdigit():
        child(sys.argv[1], sys.argv[2])
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000,
            Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".careloop/bench"),
        )
