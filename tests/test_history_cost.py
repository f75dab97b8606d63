"""A day's work must not grow with what earlier days stored (issue: a year at 10 million).

Timings would be flaky; these tests look at what the database is asked to do instead: the
query plan of every deduplicating insert, and the rows a dispatch batch touches.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from campaigns.catalog import load_campaigns
from campaigns.channels.sandbox import SandboxProvider
from campaigns.dispatch import dispatch
from campaigns.planning import OUTBOX_CONFLICT
from campaigns.send_time import learn_send_hours
from cases.collect import collect
from cases.lifecycle import ratings_seen
from cases.second_round import plan_second_round
from core.settings import Settings
from feedback.ingest import EVALUATIONS_SQL, drain
from inbox.inbox import Inbox
from insights.first_care import store_days
from insights.monthly import build_monthly_report
from insights.report import NO_MESSAGE, loop_report
from insights.targets import Targets
from segments.registry import load_rules
from tests.factories import add_action, add_opt_out, add_store, add_subscriber
from tests.test_dispatch import LATER
from tests.test_ingest import PHONE
from warehouse.db import LOOKUP_KEYS, Pinned
from warehouse.ratings import rebuild_ratings

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


def plan_of(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> str:
    rows = con.execute(f"EXPLAIN {sql}", params).fetchall()
    return "\n".join(str(row[1]) for row in rows)


def test_no_table_keeps_two_unique_keys(con: duckdb.DuckDBPyConnection) -> None:
    # A bare ON CONFLICT on a table with two unique keys plans a nested-loop join on
    # "a = a OR b = b" (135 s for 72,551 new rows against 216,169); and each unique key is an
    # index over the table's whole history that a day's random keys dirty all over.
    several = {table: n for table, n in unique_keys(con).items() if n > 1}
    assert several == {}
    con.execute("CREATE TABLE two_keys (a VARCHAR PRIMARY KEY, b VARCHAR UNIQUE)")
    assert unique_keys(con)["two_keys"] == 2  # the check sees a second key


def test_the_evaluations_dedupe_is_a_hash_join_on_the_days_around_the_page(
    con: duckdb.DuckDBPyConnection,
) -> None:
    assert "evaluations" not in unique_keys(con)  # a log, as the inbound items (0031)
    con.execute("CREATE TEMP TABLE attributed AS SELECT * EXCLUDE (evaluation_id) "
                "FROM evaluations LIMIT 0")  # fmt: skip
    moment = datetime(2026, 6, 15, tzinfo=UTC)
    for n, at in enumerate([moment - timedelta(days=365), moment]):  # a year: none to prune
        con.execute("INSERT INTO evaluations (evaluation_id, dedupe_key, channel, intent, "
                    "attribution, received_at) VALUES (?, ?, 'sms', 'unknown', "
                    "'unknown_sender', ?)", [f"ev_{n}", f"sms:SM{n}", at])  # fmt: skip
    plan = plan_of(con, EVALUATIONS_SQL, {"from": moment - timedelta(days=17), "to": moment})
    assert "HASH_JOIN" in plan.upper().replace(" ", "_"), plan
    assert not NESTED_LOOP.search(plan), plan
    assert re.search(r"received_at\s*>=", plan), plan  # pushed into the log's scan


def test_the_store_visit_rule_reads_the_recent_occasions_surveys_not_every_survey(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # Its anti-join with the surveys already requested, built on every survey of a year (44
    # million), cost 5.8 s at 10 million subscribers; joined first to the recent visits'
    # occasions (a semi join), 0.9 s.
    rule = load_rules()["store_visit"]
    params = rule.bind(date(2026, 3, 1))
    narrowed = re.compile(r"Join Type: (RIGHT_)?SEMI[^\n]*\n(.*\n)?.*= occasion", re.IGNORECASE)
    assert narrowed.search(plan_of(con, rule.sql, params))
    line = "AND q.occasion IN (SELECT occasion FROM recent)"
    assert line in rule.sql
    assert not narrowed.search(plan_of(con, rule.sql.replace(line, ""), params))


def test_the_outbox_has_one_unique_key_and_its_conflict_names_it(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Each unique key of the outbox is an index over its whole history, loaded and written
    out whole by every plan that adds to it: one, the action id, is enough (migration 0028)."""
    assert unique_keys(con)["care_actions"] == 1
    assert OUTBOX_CONFLICT == "ON CONFLICT (action_id) DO NOTHING"
    plan = plan_of(con, f"INSERT INTO care_actions SELECT * FROM care_actions {OUTBOX_CONFLICT}")
    assert not NESTED_LOOP.search(plan), plan


def outbox_merges(text: str) -> int:
    """How many ``INSERT INTO care_actions`` statements of a source end in a conflict clause,
    written in the statement or added to it after its closing quotes."""
    pattern = r'INSERT INTO care_actions\b(.*?)"""(\s*\+\s*\w+)?'
    return sum("CONFLICT" in "".join(m.groups(""))
               for m in re.finditer(pattern, text, re.DOTALL))  # fmt: skip


def test_the_daily_writers_add_to_the_outbox_without_a_merge() -> None:
    # DuckDB runs ON CONFLICT (action_id) DO NOTHING as a merge: at a year of history 2.1 to
    # 8.4 s for 100 to 6,343 new rows (a hash join over every action id ever written for a
    # day's tenure plan), 0.03 s as a plain insert. Plans and follow-ups drop by key what is
    # planned already and leave the rest to the unique key; only the demo's one-off history
    # load merges. A unit-sized plan cannot show the cost (DuckDB looked its 300 to 2,500
    # rows up in the index of 600,000), so the sources are read.
    merging = {
        str(path.relative_to(ROOT)): outbox_merges(path.read_text(encoding="utf-8"))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path for path, n in merging.items() if n} == {"demo/data.py"}
    planning = (ROOT / "campaigns" / "planning.py").read_text(encoding="utf-8")
    merged = planning.replace('USING (action_id)"""', 'USING (action_id) {X_CONFLICT}"""')
    assert outbox_merges(merged) == 1  # the check sees a conflict clause written back
    assert outbox_merges('"""INSERT INTO care_actions SELECT 1"""\n    + OUTBOX_CONFLICT\n') == 1


# A year of settled sends, in creation order, then the day's queue. Several row groups of
# history (DuckDB's row group: 122,880 rows), so a statement that reads it is easy to tell.
HISTORY = 600_000
QUEUED = 2_000
BATCH = 100
# Keys and subscribers spread like a real outbox's, so that no min/max filter on them can
# skip the history on a test's behalf.
ACTION = """'ca_' || substr(md5('{kind}' || i), 1, 24),
    'birthday|B' || (i % 5000) || '|{kind}-' || i || '|1', 'run', 'birthday',
    'B' || (i % 5000), '{kind}-' || i, 1, NULL, 'ST1', 'standard', 'en', 'sms',
    '+8613800' || lpad((i % 100000)::VARCHAR, 6, '0'), NULL, NULL, 'Happy birthday', true"""


def add_sent(con: duckdb.DuckDBPyConnection, kind: str, stamps: str, provider_id: str) -> None:
    """Sent SMS surveys, one per row ``i`` of ``stamps`` (columns i, stamp)."""
    con.execute(f"""
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, parent_evaluation_id, store_id, tier, locale,
            channel, recipient, offer_code, subject, body, survey, status, scheduled_at,
            created_at, sent_at, attempts, updated_at, timezone, claimed_at, provider_id)
        SELECT {ACTION.format(kind=kind)}, 'sent', stamp, stamp, stamp, 1, stamp,
            'Asia/Shanghai', stamp, {provider_id}
        FROM ({stamps})""")


def fill_outbox(con: duckdb.DuckDBPyConnection, queued: int = QUEUED) -> None:
    add_sent(
        con, "old",
        f"SELECT i, TIMESTAMPTZ '2025-06-15' + to_seconds(i * 50) AS stamp "
        f"FROM range({HISTORY}) r(i) ORDER BY i",
        "'SM' || md5('old' || i)",
    )  # fmt: skip
    con.execute("CHECKPOINT")
    con.execute(f"""
        INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id,
            subscriber_id, occasion, round, parent_evaluation_id, store_id, tier, locale,
            channel, recipient, offer_code, subject, body, survey, status, scheduled_at,
            created_at, attempts, updated_at, timezone, expires_at)
        SELECT {ACTION.format(kind="new")}, 'queued', TIMESTAMPTZ '2026-06-15 02:00:00+00',
            TIMESTAMPTZ '2026-06-14 16:00:00+00', 0, TIMESTAMPTZ '2026-06-14 16:00:00+00',
            'Asia/Shanghai', TIMESTAMPTZ '2026-06-15 16:00:00+00'
        FROM range({queued}) r(i)""")


class Profiled:
    """A connection that notes the rows each statement scanned, from DuckDB's own profile.
    The profile is complete once a result is read whole, so each result is read here."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, as_rows: bool = False) -> None:
        self._con = con
        self.as_rows = as_rows  # results as DuckDB's own rows (``Rows``), not a frame
        self.scanned: list[tuple[int, str]] = []
        self.by_table: list[tuple[dict[str, int], str]] = []  # rows scanned, per table read
        con.execute("SET enable_profiling = 'no_output'; SET profiling_coverage = 'ALL'")

    def execute(self, sql: str, *args: object) -> Read | Rows:
        result = self._con.execute(sql, *args)
        read: Read | Rows
        if self.as_rows:
            read = Rows(result.description or [], result.fetchall() if result.description else [])
        else:
            read = Read(result.fetch_df() if result.description else pd.DataFrame(),
                        [str(d[1]) for d in result.description or []])  # fmt: skip
        self.note(sql)
        return read

    def sql(self, sql: str, **kwargs: object) -> ProfiledRelation:
        """A relation (``warehouse.db.query_typed_frame`` reads through one), noted once read."""
        return ProfiledRelation(self, self._con.sql(sql, **kwargs), sql)  # type: ignore[arg-type]

    def note(self, sql: str) -> None:
        """The rows the statement just run scanned, in all and per table."""
        profile = json.loads(self._con.get_profiling_information(format="json"))
        if "query" not in profile:  # BEGIN, COMMIT: no plan, nothing read
            return
        self.scanned.append((int(profile["query"]["total_rows_scanned"]), " ".join(sql.split())))
        tables: dict[str, int] = {}
        for scan in _scans(profile["operator"]):
            name = scan["extra_info"]["Table"].rsplit(".", 1)[-1]
            tables[name] = tables.get(name, 0) + int(scan.get("rows_scanned", 0))
        self.by_table.append((tables, " ".join(sql.split())))

    def read_from(self, table: str, at_least: int) -> list[str]:
        """The statements that read ``at_least`` rows of ``table``, with how many."""
        return [
            f"{tables[table]:,} rows: {sql}"
            for tables, sql in self.by_table
            if tables.get(table, 0) >= at_least
        ]

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


class ProfiledRelation:
    """A relation of a ``Profiled`` connection: its statement is noted when it is read."""

    def __init__(self, profiled: Profiled, relation: duckdb.DuckDBPyRelation, sql: str) -> None:
        self._profiled, self._relation, self._sql = profiled, relation, sql

    @property
    def types(self) -> list[Any]:
        return list(self._relation.types)

    @property
    def columns(self) -> list[str]:
        return list(self._relation.columns)

    def project(self, expressions: str) -> ProfiledRelation:
        return ProfiledRelation(self._profiled, self._relation.project(expressions), self._sql)

    def pl(self) -> object:
        frame = self._relation.pl()
        self._profiled.note(self._sql)
        return frame


def _scans(operators: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every scan of a stored table in a profile's operator tree."""
    for operator in operators:
        if operator.get("type") == "TABLE_SCAN" and "Table" in operator.get("extra_info", {}):
            yield operator
        yield from _scans(operator.get("children", []))


@dataclass
class Rows:
    """A statement's rows as DuckDB gave them, read already (lists and structs stay Python's)."""

    description: list[Any]
    rows: list[tuple[Any, ...]]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


@dataclass
class Read:
    """A statement's rows, read already: what the dispatch code asks of a result."""

    frame: pd.DataFrame
    types: list[str]  # DuckDB's, by column: pandas turns a DATE into a Timestamp

    def fetch_df(self) -> pd.DataFrame:
        return self.frame

    def fetchall(self) -> list[tuple[object, ...]]:
        dates = [t == "DATE" for t in self.types]
        return [
            tuple(_as_date(v) if is_date else v for v, is_date in zip(row, dates, strict=True))
            for row in self.frame.itertuples(index=False, name=None)
        ]

    def fetchone(self) -> tuple[object, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None


def _as_date(value: Any) -> Any:
    return None if pd.isna(value) else value.date()


def test_a_dispatch_batch_does_not_read_the_settled_history(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    fill_outbox(con)
    # settled as a year's are, so that no row group's statuses exclude the open ones
    con.execute(
        "UPDATE care_actions SET status = 'delivered' WHERE status = 'sent' AND random() < 0.5"
    )
    con.execute("UPDATE care_actions SET status = 'suppressed', sent_at = NULL "
                "WHERE status = 'sent' AND random() < 0.1")  # fmt: skip
    profiled = Profiled(con)
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    figures = dispatch(Pinned(profiled), sandbox, now=LATER, batch_size=BATCH)  # type: ignore[arg-type]
    assert sum(figures.sent.values()) == QUEUED
    batches = QUEUED // BATCH
    readers = [sql for rows, sql in profiled.scanned if rows >= HISTORY // 2]
    # Once a run: what is open (and what a crash left sending) as it begins. As it ends,
    # nothing was added meanwhile (the outbox's row count, no column read), so nothing older
    # can be open (tests/test_dispatch_races.py: a plan meanwhile is looked for). A batch's
    # statements read the open rows (and at most the row group the history ends in).
    assert len(readers) == 1, "\n".join(readers)
    batch_rows = sum(rows for rows, _ in profiled.scanned) - sum(
        rows for rows, _ in profiled.scanned if rows >= HISTORY // 2
    )
    assert batch_rows / batches < HISTORY / 2


# A day's open outbox many times a batch (at 10 million subscribers, about 100,000 actions).
OPEN_DAY = 20_000


def test_a_dispatch_batch_reads_about_its_own_rows_not_the_days_outbox(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    fill_outbox(con, queued=OPEN_DAY)
    profiled = Profiled(con)
    sandbox = SandboxProvider(settings.sandbox_path, Inbox(settings.inbox_path))
    figures = dispatch(Pinned(profiled), sandbox, now=LATER, batch_size=BATCH)  # type: ignore[arg-type]
    assert sum(figures.sent.values()) == OPEN_DAY
    batches = OPEN_DAY // BATCH
    # The open outbox is read by the run, not by its 200 batches: finding the open part and
    # counting what is due (at the start and the end), the standard over it, and each pass's
    # reading of what is due (the day's, then one finding nothing left). A batch's statements
    # look its own keys up, reading about as many rows as it holds.
    wide = [(rows, sql) for rows, sql in profiled.scanned if rows > 10 * BATCH]
    assert len(wide) <= 8, "\n".join(f"{rows:,}: {sql[:160]}" for rows, sql in wide)
    # About a dozen statements a batch, each reading about twice its keys (an index lookup);
    # before, each of five read the day's 20,000 open actions.
    narrow = sum(rows for rows, _ in profiled.scanned if rows <= 10 * BATCH)
    assert narrow / batches <= 20 * BATCH


def test_a_batch_of_keys_is_looked_up_not_scanned(con: duckdb.DuckDBPyConnection) -> None:
    fill_outbox(con)
    profiled = Profiled(con)
    for named in (60, 3_000, LOOKUP_KEYS):  # past DuckDB's own limits (50 and 2,048 keys)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE batch AS SELECT action_id FROM care_actions "
            f"USING SAMPLE {named} ROWS (reservoir, 7)"
        )
        profiled.execute(
            "UPDATE care_actions a SET updated_at = a.updated_at FROM batch b "
            "WHERE a.action_id = b.action_id"
        )
        rows, _ = profiled.scanned[-1]
        assert rows <= 3 * named, f"{named} keys: {rows:,} rows read of {HISTORY + QUEUED:,}"


def test_a_sandbox_batch_of_keys_is_looked_up_within_dispatch_and_only_there(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The sandbox's batches name 10,000 keys, past LOOKUP_KEYS: dispatch raises the lookups
    for its batch's statements (warehouse.db.looking_up) and sets them back after, as a plan
    with that many members held hundreds of MB more with them raised."""
    from campaigns.channels.sandbox import SandboxProvider
    from warehouse.db import looking_up

    fill_outbox(con)
    profiled = Profiled(con)
    named = SandboxProvider.max_batch
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE batch AS SELECT action_id FROM care_actions "
        f"USING SAMPLE {named} ROWS (reservoir, 7)"
    )
    update = (
        "UPDATE care_actions a SET updated_at = a.updated_at FROM batch b "
        "WHERE a.action_id = b.action_id"
    )
    with looking_up(con, named):
        profiled.execute(update)
    rows, _ = profiled.scanned[-1]
    assert rows <= 3 * named, f"{named} keys: {rows:,} rows read of {HISTORY + QUEUED:,}"
    [(setting,)] = con.execute("SELECT current_setting('index_scan_max_count')").fetchall()
    assert int(setting) == LOOKUP_KEYS
    profiled.execute(update)  # outside: the connection's own limit, so the table is read
    rows, _ = profiled.scanned[-1]
    assert rows >= HISTORY


def test_a_collect_page_does_not_read_the_settled_history(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    fill_outbox(con)  # a year of SMS surveys, sent to the same numbers that reply today
    add_store(con)
    add_subscriber(con, "S1")
    inbox = Inbox(settings.inbox_path)
    sent = LATER - timedelta(hours=1)
    for n in range(50):
        # keys spread like the history's, so that no min/max filter skips it for the test
        action_id, sid = f"ca_{hashlib.md5(b'%d' % n).hexdigest()[:24]}", f"SM{n:02d}"
        add_action(con, action_id, "S1", recipient=PHONE, sent_at=sent, provider_id=sid)
        con.execute("UPDATE care_actions SET claimed_at = ? WHERE action_id = ?", [sent, action_id])
        # Twilio's callback says which number sent it (most sends know it already)
        status = {"MessageSid": sid, "MessageStatus": "delivered", "From": "+10000000000"}
        inbox.put("status", f"{sid}:delivered", LATER, status)
    reply = {"MessageSid": "SMr", "From": PHONE, "To": "+10000000000", "Body": "5"}
    inbox.put("sms", "SMr", LATER, reply)
    profiled = Profiled(con)
    figures = drain(profiled, inbox, reply_window=timedelta(hours=72))  # type: ignore[arg-type]
    assert figures.status_events == 50 and figures.replies == {"matched": 1}
    readers = [sql for rows, sql in profiled.scanned if rows >= HISTORY // 2]
    assert readers == []


def test_landing_a_page_reads_the_items_that_came_about_then_not_the_log(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    """The inbound log has no unique key to load and write out whole (it had one over the
    whole history), and finding a page's repeats reads the log's last days only."""
    logged = 600_000  # a year of items, in the order they came
    con.execute(
        """INSERT INTO inbound_messages
        SELECT 'sms:SM' || md5(i::VARCHAR), i, 'sms', ?::TIMESTAMPTZ - to_microseconds(
            ((? - i) * 365 * 86400 * 1e6 / ?)::BIGINT), '{}', now()
        FROM range(?) r(i)""",
        [LATER, logged, logged, logged],
    )
    assert not {"inbound_messages", "delivery_events"} & set(unique_keys(con))
    inbox = Inbox(settings.inbox_path)
    for n in range(50):
        inbox.put("sms", f"SMnew{n}", LATER, {"MessageSid": f"SMnew{n}", "From": PHONE})
    inbox.put("sms", "SM" + hashlib.md5(b"599999").hexdigest(), LATER, {"From": PHONE})
    profiled = Profiled(con)
    figures = drain(profiled, inbox, reply_window=timedelta(hours=72))  # type: ignore[arg-type]
    assert (figures.drained, figures.duplicates) == (51, 1)
    assert profiled.read_from("inbound_messages", logged // 4) == []


def test_keeping_a_pages_evaluations_reads_the_ones_that_came_about_then_not_the_log(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    """Evaluations have no unique key to load and write out whole; a page's repeats are
    looked for among the last weeks' evaluations only, and still found there."""
    logged = 600_000  # a year of replies, in the order they came
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, channel, intent, attribution,
            received_at)
        SELECT 'ev_' || substr(md5(k), 1, 24), k, 'sms', 'unknown', 'unknown_sender', arrived
        FROM (SELECT 'sms:SM' || md5(i::VARCHAR) AS k, ?::TIMESTAMPTZ - to_microseconds(
            ((? - i) * 365 * 86400 * 1e6 / ?)::BIGINT) AS arrived FROM range(?) r(i))""",
        [LATER, logged, logged, logged],
    )
    inbox = Inbox(settings.inbox_path)
    for n in range(50):
        inbox.put("sms", f"SMnew{n}", LATER, {"MessageSid": f"SMnew{n}", "From": PHONE})
    # the newest logged reply, come again after the inbound log's look for repeats
    repeat = "SM" + hashlib.md5(b"599999").hexdigest()
    inbox.put("sms", repeat, LATER + timedelta(days=5), {"From": PHONE})
    profiled = Profiled(con)
    figures = drain(profiled, inbox, reply_window=timedelta(hours=72))  # type: ignore[arg-type]
    assert (figures.drained, figures.duplicates) == (51, 0)
    kept = con.execute("SELECT count(*) FROM evaluations WHERE dedupe_key = ?", [f"sms:{repeat}"])
    assert kept.fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM evaluations").fetchone() == (logged + 50,)
    assert profiled.read_from("evaluations", logged // 4) == []


def test_finding_the_follow_ups_due_reads_neither_the_outbox_nor_the_asked_backlog(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    """Every resolved case already asked since its resolution stays resolved until its
    customer answers (many never do): finding today's due ones reads the cases, not the
    outbox, and a case resolved again after it was asked is due again."""
    from cases.follow_up import plan_follow_ups

    fill_outbox(con)
    add_store(con)
    add_subscriber(con, "S1")
    resolved = LATER - timedelta(days=30)
    con.execute(
        """INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id,
            action_id, score, comment, opened_at, status, closed_at, follow_ups,
            follow_up_asked_at)
        SELECT 'E' || i, 'ST1', 'S1', 'store_visit', 'A' || i, 1, 'slow', $at, 'resolved',
            $at, 1, $at + INTERVAL 1 HOUR FROM range(5000) t(i)""",
        {"at": resolved},
    )
    profiled = Profiled(con)
    assert plan_follow_ups(profiled, settings, LATER) == 0  # type: ignore[arg-type]
    assert profiled.read_from("care_actions", 1) == []
    assert profiled.read_from("subscribers", 1) == []
    # E7 reopened and resolved again after its follow-up went: it is asked again
    add_action(con, "A7", "S1", recipient=PHONE, sent_at=resolved)
    con.execute(
        """INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
            campaign_id, round, store_id, channel, intent, score, comment, attribution,
            received_at)
        VALUES ('E7', 'k-E7', 'A7', 'S1', 'store_visit', 1, 'ST1', 'sms', 'rating', 1,
            'slow', 'matched', $at)""",
        {"at": resolved},
    )
    con.execute(
        "UPDATE manager_cases SET closed_at = $at WHERE evaluation_id = 'E7'",
        {"at": LATER - timedelta(hours=1)},
    )
    assert plan_follow_ups(con, settings, LATER) == 1
    assert plan_follow_ups(con, settings, LATER) == 0  # asked once per resolution


# --- reading ratings ---------------------------------------------------------------------------
# A year of ratings behind today's work: every settled survey of fill_outbox rated, an hour
# after it was sent, as collect would have kept them (the migration's backfill, in order).
def fill_ratings(con: duckdb.DuckDBPyConnection) -> None:
    fill_outbox(con)
    con.execute("""
        INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id,
            campaign_id, round, store_id, channel, sender, intent, score, comment, attribution,
            received_at)
        SELECT 'ev_' || substr(md5(action_id), 1, 24), 'sms:' || action_id, action_id,
            subscriber_id, campaign_id, 1, store_id, 'sms', recipient, 'rating',
            1 + hash(action_id) % 5, NULL, 'matched', sent_at + INTERVAL 1 HOUR
        FROM care_actions WHERE status = 'sent' ORDER BY sent_at""")
    rebuild_ratings(con)
    ratings_seen(con)  # as the collects that took them in left it
    con.execute("CHECKPOINT")


def today_rated(con: duckdb.DuckDBPyConnection, settings: Settings) -> Inbox:
    """Today's surveys, sent an hour ago, and their answers waiting in the inbox."""
    add_store(con)
    inbox = Inbox(settings.inbox_path)
    sent = LATER - timedelta(hours=1)
    for n in range(20):
        add_subscriber(con, f"S{n}")
        add_action(con, f"A{n}", f"S{n}", channel="email", sent_at=sent)
        inbox.put("email_rating", f"R{n}", LATER, {"action_id": f"A{n}", "score": 1 + n % 5})
    return inbox


def history_then_today_collected(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """A year of rated history (ending 2026-05-28), then today's 20 ratings collected."""
    fill_ratings(con)
    inbox = today_rated(con, settings)
    collect(con, inbox, reply_window=timedelta(hours=72), now=LATER)


def assert_no_history_read(profiled: Profiled) -> None:
    for table in ("evaluations", "latest_ratings", "care_actions"):
        assert profiled.read_from(table, HISTORY // 2) == []


def test_a_collect_reads_the_ratings_of_its_replies_not_of_the_history(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    fill_ratings(con)
    inbox = today_rated(con, settings)
    profiled = Profiled(con)
    figures = collect(profiled, inbox, reply_window=timedelta(hours=72), now=LATER)  # type: ignore[arg-type]
    assert figures.replies == {"matched": 20}
    assert_no_history_read(profiled)


def test_a_second_round_reads_the_days_ratings_not_the_history(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    history_then_today_collected(con, settings)
    profiled = Profiled(con)
    campaign = load_campaigns(settings)["birthday"]
    plan = plan_second_round(profiled, settings, campaign, LATER.date(), "r2")  # type: ignore[arg-type]
    assert plan.figures["cases_opened"] == 8  # today's ratings of 1-2
    assert_no_history_read(profiled)


def test_a_months_report_reads_its_twelve_months_not_the_history_before(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    history_then_today_collected(con, settings)
    # last month's report stored the retention lift's settled days (the first one reads the
    # history once: insights/first_care.py)
    store_days(con, "Asia/Shanghai", date(2027, 5, 1) - timedelta(days=90))
    profiled = Profiled(con)
    # May 2027: its twelve months begin in June 2026, after the history; today's 20 are in.
    report = build_monthly_report(
        profiled, "2027-05", "Asia/Shanghai", now=datetime(2027, 6, 1, tzinfo=UTC),  # type: ignore[arg-type]
        sla_hours=48, targets=Targets(), lift_days=90, reply_window_hours=72,
    )  # fmt: skip
    response = next(p for p in report.trends["response_rate"] if p.month == "2026-06")
    assert response.n == 20
    assert_no_history_read(profiled)


def test_a_months_loop_report_reads_its_month_not_the_history_before(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    history_then_today_collected(con, settings)
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, LATER.date(), "r2")  # cases with second rounds
    # June's opt-outs: a customer of today's surveys, and one whose every message is history
    # (B7's last, 2026-05-26, is more than 7 days before: put down to no campaign)
    add_opt_out(con, "S1", "email", LATER, "sms_reply", "o1")
    add_opt_out(con, "B7", "sms", LATER, "sms_reply", "o2")
    profiled = Profiled(con, as_rows=True)
    june = loop_report(
        profiled, "Asia/Shanghai", date(2026, 6, 1), date(2026, 6, 30), now=LATER,  # type: ignore[arg-type]
    )  # fmt: skip
    birthday = next(c for c in june.campaigns if c["campaign_id"] == "birthday")
    assert (birthday["rated"], birthday["replied"], birthday["cases"]) == (20, 20, 8)
    opted = {c["campaign_id"]: c["opted_out"] for c in june.campaigns if c["opted_out"]}
    assert opted == {"birthday": 1, NO_MESSAGE: 1}
    assert_no_history_read(profiled)


def test_learning_send_hours_reads_the_unsettled_days_ratings_not_the_years(
    con: duckdb.DuckDBPyConnection,
) -> None:
    fill_ratings(con)  # a year of rated sends, ending 2026-05-28
    add_subscriber(con, "B0")  # and their 5,000 customers
    con.execute(
        "INSERT INTO subscribers SELECT s.* REPLACE ('B' || i AS subscriber_id) "
        "FROM subscribers s, range(1, 5000) r(i) WHERE s.subscriber_id = 'B0'"
    )
    # the days not settled yet: more sends than a join looks up by key
    add_sent(
        con, "live",
        f"SELECT i, TIMESTAMPTZ '2026-06-05' + to_seconds(i * 60) AS stamp "
        f"FROM range({LOOKUP_KEYS + 1000}) r(i)",
        "'SM' || md5('live' || i)",
    )  # fmt: skip
    con.execute("CREATE TEMP TABLE wanted AS SELECT 'B1' AS subscriber_id")
    learn = partial(learn_send_hours, members="wanted", hours=[10, 18], fallback=time(10))
    learn(con, before=LATER)  # stores the settled days, as the day's first plan does
    profiled = Profiled(con, as_rows=True)
    learned = learn(profiled, before=LATER + timedelta(days=1))  # type: ignore[arg-type]
    assert learned.learned + learned.fallback == 1
    # the pooled hours and the members' own cells read only the days not settled yet, and
    # their ratings
    assert profiled.read_from("latest_ratings", HISTORY // 2) == []
    assert profiled.read_from("care_actions", HISTORY // 2) == []


def test_a_reply_is_matched_among_its_own_numbers_surveys_not_every_recent_one(
    con: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    """The weeks an SMS reply's survey is looked for in hold every number's surveys; the
    ASOF joins that pick the latest one build on the page's numbers' only."""
    add_sent(  # a week of surveys to 50,000 numbers
        con, "recent",
        f"SELECT i, TIMESTAMPTZ '{LATER.isoformat()}' - to_seconds(i * 10) AS stamp "
        "FROM range(50000) r(i)",
        "'SMx' || i",
    )  # fmt: skip
    add_store(con)
    add_subscriber(con, "S1")
    add_action(con, "A1", "S1", recipient=PHONE, sent_at=LATER - timedelta(hours=1))
    inbox = Inbox(settings.inbox_path)
    inbox.put("sms", "SMr", LATER, {"MessageSid": "SMr", "From": PHONE, "To": "+1", "Body": "5"})
    profiled = WidestProfiled(con)
    figures = drain(profiled, inbox, reply_window=timedelta(hours=72))  # type: ignore[arg-type]
    assert figures.replies == {"matched": 1}
    [widest] = [rows for rows, sql in profiled.widest if "TEMP TABLE attributed" in sql]
    assert widest <= 10, f"{widest:,} rows through one operator to match one reply"


class WidestProfiled(Profiled):
    """Also notes, per statement, the most rows any one of its operators passed on."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        super().__init__(con)
        self.widest: list[tuple[int, str]] = []

    def execute(self, sql: str, *args: object) -> Read:
        read = super().execute(sql, *args)
        profile = json.loads(self._con.get_profiling_information(format="json"))
        self.widest.append((max(_rows(profile["operator"]), default=0), " ".join(sql.split())))
        return read


def _rows(operators: list[dict[str, Any]]) -> Iterator[int]:
    for operator in operators:
        yield int(operator.get("intermediate_rows", 0))
        yield from _rows(operator.get("children", []))
