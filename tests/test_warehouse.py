import hashlib
from datetime import date

import duckdb
import phonenumbers
import pytest

from demo.data import build_demo_data
from warehouse import db
from warehouse.db import Migration, MigrationError, applied_versions, available_migrations, connect


def test_migrations_apply_in_order_once(settings):
    con = connect(settings.warehouse_path)
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert sorted(applied_versions(con)) == versions
    con.close()
    again = connect(settings.warehouse_path)  # reopening applies nothing twice
    assert db.migrate(again) == []
    again.close()


def test_an_edited_migration_is_refused(settings, monkeypatch):
    connect(settings.warehouse_path).close()
    original = available_migrations()
    edited = [
        Migration(m.version, m.name, m.sql + "\n-- edited") if m.version == 1 else m
        for m in original
    ]
    monkeypatch.setattr(db, "available_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        connect(settings.warehouse_path)


def test_a_new_migration_upgrades_in_place(settings, monkeypatch):
    con = connect(settings.warehouse_path)
    con.execute(
        "INSERT INTO stores BY NAME SELECT 'ST1' AS store_id, 'a' AS name, 'b' AS city, "
        "'c' AS region, 'UTC' AS timezone, 'm' AS manager_name, 'm@example.com' AS manager_email"
    )
    con.close()
    extra = Migration(999, "add_note", "ALTER TABLE stores ADD COLUMN note VARCHAR;")
    monkeypatch.setattr(db, "available_migrations", lambda: [*available_migrations(), extra])
    upgraded = connect(settings.warehouse_path)
    assert upgraded.execute("SELECT store_id, note FROM stores").fetchall() == [("ST1", None)]
    assert 999 in applied_versions(upgraded)
    upgraded.close()


def test_a_warehouse_a_newer_careloop_upgraded_is_refused_and_keeps_its_record(
    settings, monkeypatch
):
    """Older code on a newer schema (a worker not restarted, a rollback) would write rows the
    newer readers take as settled: it stops with the versions it does not know."""
    extra = Migration(999, "add_note", "ALTER TABLE stores ADD COLUMN note VARCHAR;")
    monkeypatch.setattr(db, "available_migrations", lambda: [*available_migrations(), extra])
    connect(settings.warehouse_path).close()
    monkeypatch.undo()
    with pytest.raises(
        MigrationError, match=r"warehouse has migration 999 that this careloop does not know"
    ):
        connect(settings.warehouse_path)
    readable = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert 999 in {
        row[0] for row in readable.execute("SELECT version FROM schema_migrations").fetchall()
    }
    readable.close()


def test_an_inbox_a_newer_careloop_upgraded_is_refused(tmp_path):
    import sqlite3

    from inbox.inbox import Inbox

    path = tmp_path / "inbox.sqlite"
    Inbox(path)
    newer = sqlite3.connect(path)
    newer.execute("INSERT INTO schema_migrations VALUES (999, 'later', 'abc')")
    newer.commit()
    newer.close()
    with pytest.raises(MigrationError, match=r"inbox has migration 999 that this careloop"):
        Inbox(path)


def fingerprint(con):
    rows = con.execute("SELECT * FROM subscribers ORDER BY subscriber_id").fetchall()
    visits = con.execute("SELECT * FROM store_visits ORDER BY visit_id").fetchall()
    return hashlib.sha256(repr((rows, visits)).encode()).hexdigest()


def test_demo_data_is_deterministic_and_realistic(settings):
    con = connect(settings.warehouse_path)
    summary = build_demo_data(con, subscribers=20_000, seed=3, until=date(2026, 3, 1))
    first = fingerprint(con)
    build_demo_data(con, subscribers=20_000, seed=3, until=date(2026, 3, 1))
    assert fingerprint(con) == first
    build_demo_data(con, subscribers=20_000, seed=4, until=date(2026, 3, 1))
    assert fingerprint(con) != first
    assert summary.subscribers == 20_000 and summary.visits > 30_000
    phones = [
        p
        for (p,) in con.execute("SELECT phone FROM subscribers WHERE phone IS NOT NULL").fetchall()
    ]
    assert len(set(phones)) == len(phones)
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in phones[:2000])
    stats = con.execute("""SELECT
        count(*) FILTER (strftime(birthday, '%m-%d') = '02-29'),
        count(*) FILTER (birthday > DATE '2026-03-01' OR joined_on > DATE '2026-03-01'),
        count(DISTINCT locale), count(DISTINCT tier), count(DISTINCT timezone),
        count(*) FILTER (phone LIKE '+86%'), count(*) FILTER (phone LIKE '+1%'),
        count(*) FILTER (joined_on < DATE '2007-01-01')
        FROM subscribers""").fetchone()
    feb29, future, locales, tiers, zones, cn, us, veterans = stats
    assert feb29 > 0 and future == 0 and locales == 2 and tiers == 4 and zones >= 5
    assert cn > us > 0 and veterans > 0
    con.close()


def test_demo_data_rejects_an_empty_population(con):
    with pytest.raises(ValueError, match="at least 1"):
        build_demo_data(con, subscribers=0, seed=1, until=date(2026, 1, 1))
    assert isinstance(con, duckdb.DuckDBPyConnection)


def test_sqlite_inbox_opened_by_many_at_once_migrates_to_one_identity(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from inbox.inbox import Inbox

    path = tmp_path / "inbox.sqlite"
    with ThreadPoolExecutor(6) as pool:
        identities = set(pool.map(lambda _: Inbox(path).identity, range(12)))
    assert len(identities) == 1


def test_a_new_sqlite_inbox_is_in_wal_mode_before_anyone_can_open_it(tmp_path, monkeypatch):
    """A reader that holds the file from the moment it appears must not stop its creator.
    Before, the file appeared empty and was switched to WAL in place: a switch SQLite refuses at
    once, whatever the busy timeout, while another connection reads."""
    import sqlite3

    import inbox.db
    from inbox.inbox import Inbox

    path = tmp_path / "inbox.sqlite"
    readers: list[sqlite3.Connection] = []

    def open_with_a_reader_there_first(target):
        if path.exists() and not readers:
            reader = sqlite3.connect(path, timeout=0, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            readers.append(reader)
        return sqlite3.connect(target, timeout=0.5, isolation_level=None)

    monkeypatch.setattr(inbox.db, "open_sqlite", open_with_a_reader_there_first)
    Inbox(path)
    assert len(readers) == 1
    assert readers[0].execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    readers[0].close()
    leftovers = [f.name for f in tmp_path.iterdir() if not f.name.startswith("inbox.sqlite")]
    assert leftovers == []


def test_a_writer_checkpoints_its_log_once_when_it_closes(tmp_path):
    """A checkpoint writes out the whole index of every table it changed: a command that
    commits page by page must not checkpoint each time its log passes DuckDB's 16 MB."""
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    con.execute("CREATE TABLE pages (key VARCHAR PRIMARY KEY, body VARCHAR)")
    log = path.with_name(path.name + ".wal")
    for page in range(8):  # about 5 MB a page
        con.execute(
            "INSERT INTO pages SELECT md5(? || i::VARCHAR), repeat('x', 1000)"
            " FROM range(5000) r(i)",
            [str(page)],
        )
    assert log.stat().st_size > 32 * 2**20, "the log was checkpointed on the way"
    con.close()
    assert not log.exists() or log.stat().st_size == 0
    again = connect(path)
    assert again.execute("SELECT count(*) FROM pages").fetchone() == (40_000,)
    again.close()


def test_a_typed_frame_keeps_duckdbs_types_where_the_pandas_route_loses_them():
    """Dispatch reads its due actions as a typed frame: a column read with only NULLs, or no
    row at all, keeps its type (through pandas a time of NULLs came back typeless, and with
    no row, text); after a fetchone() left a result open, it still reads."""
    import polars as pl

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = (
        "SELECT * FROM (VALUES (1, NULL::TIME, TIMESTAMPTZ '2027-03-01 04:00:00+00'),"
        " (NULL, NULL, NULL)) t(attempts, window_start, sent_at) WHERE $all"
    )
    con.execute("SELECT 1 UNION ALL SELECT 2").fetchone()  # a result left open
    frame = db.query_typed_frame(con, sql, {"all": True})
    assert frame.schema == pl.Schema(
        {"attempts": pl.Int32, "window_start": pl.Time, "sent_at": pl.Datetime("us", "UTC")}
    )
    assert frame["attempts"].to_list() == [1, None]
    assert db.query_frame(con, sql, {"all": True}).schema["window_start"] == pl.Null
    none = db.query_typed_frame(con, sql, {"all": False})
    assert none.height == 0 and none.schema == frame.schema
    assert db.query_frame(con, sql, {"all": False}).schema["window_start"] == pl.String
    cast = db.query_typed_frame(con, sql, {"all": False}, pl.Schema({"attempts": pl.Int64}))
    assert cast.schema["attempts"] == pl.Int64
