"""The daily subscriber file through the gate: `careloop load subscribers FILE` on N rows
(CARELOOP_BENCH_LOAD_ROWS, default 10 million), next to DuckDB's plain ``read_csv`` of the
same file into a table, each in its own process, measured the same way.

Target (2 cores): 10 million rows in under 5 minutes and under 3 GB peak RSS, and peak memory
that does not grow with the file. Run: ``python -m benchmarks.load_bench`` (``make bench``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROWS = int(os.environ.get("CARELOOP_BENCH_LOAD_ROWS", "10000000"))
BIN = Path(sys.executable).parent
OFFLINE = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1"}
POLL_SECONDS = 0.05
DOMAINS = ["example.com", "example.net", "mail.example.org", "qq.com", "163.com", "bücher.de"]


def subscribers_csv(home: Path, rows: int) -> Path:
    """A valid subscribers file of ``rows`` rows, generated set-based by DuckDB and kept:
    the same N gives the same file, so later runs skip generating it."""
    path = home / f"subscribers-{rows}.csv"
    if path.exists():
        return path
    from demo.data import CN_MOBILE_PREFIXES, US_AREA_CODES, make_stores

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.register("stores", make_stores().to_arrow())
    con.execute(
        "CREATE TABLE store_no AS SELECT row_number() OVER (ORDER BY store_id) - 1 AS no, "
        "store_id, timezone FROM stores"
    )
    partial = home / f"{path.name}.partial"
    con.execute(
        f"COPY ({_rows_sql(rows, CN_MOBILE_PREFIXES, US_AREA_CODES)}) TO '{partial}' "
        "(HEADER, DELIMITER ',')"
    )
    con.close()
    partial.rename(path)
    return path


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _rows_sql(rows: int, cn_prefixes: list[str], us_areas: list[str]) -> str:
    """One subscriber per i: three in four in China (mobile numbers, zh-CN), the rest in the
    US; one in fifty without a phone, one in five without an email."""
    cn, us = _sql_list(cn_prefixes), _sql_list(us_areas)
    us_rest = f"(i // {len(us_areas)} * 7654321 + 1234567) % 7000000"
    phone = (
        f"CASE WHEN i % 50 = 7 THEN NULL WHEN i % 4 = 3 THEN '+1' || {us}[i % {len(us_areas)} + 1]"
        f" || (300 + {us_rest} // 10000)::VARCHAR || lpad(({us_rest} % 10000)::VARCHAR, 4, '0')"
        f" ELSE '+86' || {cn}[i % {len(cn_prefixes)} + 1] || "
        f"lpad(((i // {len(cn_prefixes)} * 48271 + 24681357) % 100000000)::VARCHAR, 8, '0') END"
    )
    email = (
        "CASE WHEN i % 5 = 1 THEN NULL ELSE "
        "['li.wei', 'mary.smith', 'wang_fang', 'j.o''brien', 'chen+promo'][i % 5 + 1] "
        f"|| (i % 997)::VARCHAR || '@' || {_sql_list(DOMAINS)}[i % {len(DOMAINS)} + 1] END"
    )
    return f"""
        SELECT 'S' || lpad(i::VARCHAR, 9, '0') AS subscriber_id,
               CASE WHEN i % 4 = 3 THEN 'Mary Smith' ELSE '李伟' END AS name,
               {phone} AS phone,
               {email} AS email,
               CASE WHEN i % 20 = 3 THEN NULL
                    ELSE DATE '1950-01-01' + (i * 7919 % 18000)::INTEGER END AS birthday,
               DATE '2006-01-01' + (i * 104729 % 7300)::INTEGER AS joined_on,
               ['standard', 'silver', 'gold', 'platinum'][i % 4 + 1] AS tier,
               s.store_id AS home_store_id,
               s.timezone AS timezone,
               CASE WHEN i % 4 = 3 THEN 'en' ELSE 'zh-CN' END AS locale,
               i % 9 <> 0 AS sms_consent,
               i % 3 = 0 AS email_consent,
               i % 2 = 0 AS voice_consent,
               CASE WHEN i % 100 = 5 THEN DATE '2025-06-30' END AS left_on
        FROM range({rows}) t(i)
        JOIN store_no s ON s.no = i % (SELECT count(*) FROM store_no)
        ORDER BY i
    """


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command: its VmHWM, read until it exits (the
    high-water mark only rises, so the last reading is the peak to within one poll)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _hwm_kb(process.pid))
        time.sleep(POLL_SECONDS)
    seconds = time.perf_counter() - started
    _, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {stderr[-2000:]}")
    return seconds, peak_kb / 1024


def _hwm_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone between poll() and the read
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _fresh_home(home: Path, env: dict[str, str]) -> None:
    """A warehouse with the demo's stores (subscribers name their home store)."""
    from demo.data import make_stores

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    stores = home / "stores.csv"
    make_stores().write_csv(stores)
    run_measured([str(BIN / "careloop"), "load", "stores", str(stores)], env)


BASELINE = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE s AS SELECT * FROM read_csv(?, all_varchar = true)", [sys.argv[2]])
"""


def main(bench_home: Path) -> list[str]:
    root = bench_home / "load-bench"
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    path = subscribers_csv(root, ROWS)
    generated = time.perf_counter() - started
    home = root / "home"
    env = {**os.environ, **OFFLINE, "CARELOOP_HOME": str(home)}
    _fresh_home(home, env)
    load = [str(BIN / "careloop"), "load", "subscribers", str(path)]
    seconds, peak = run_measured(load, env)
    # The next day: the same extract over the subscribers it loaded (every id known).
    again_seconds, again_peak = run_measured(load, env)
    plain_db = root / "plain.duckdb"
    plain_db.unlink(missing_ok=True)
    base_seconds, base_peak = run_measured(
        [sys.executable, "-c", BASELINE, str(plain_db), str(path)], env
    )
    plain_db.unlink(missing_ok=True)
    mb = path.stat().st_size / 1e6
    return [
        f"load: {ROWS:,} subscribers, {mb:,.0f} MB CSV (generated or reused in {generated:.1f} s)",
        f"load careloop load subscribers: {seconds:.1f} s, peak {peak:,.0f} MB RSS, "
        f"{ROWS / seconds:,.0f} rows/s",
        f"load again over the same subscribers (the daily case): {again_seconds:.1f} s, peak "
        f"{again_peak:,.0f} MB RSS",
        f"load baseline DuckDB read_csv into a table: {base_seconds:.1f} s, peak "
        f"{base_peak:,.0f} MB RSS, {ROWS / base_seconds:,.0f} rows/s",
        f"load ratio: {seconds / base_seconds:.1f}x the baseline's time, "
        f"{peak / base_peak:.1f}x its peak memory; targets 10M rows < 300 s and < 3,072 MB",
    ]


if __name__ == "__main__":
    print("\n".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".careloop/bench"))))
