"""The inbox on the machine's real PostgreSQL: migrations, out-of-order commits, and what
several service instances share (replay guard, clarifications, boards)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cases.board import Board, BoardUpdate
from cases.collect import collect
from feedback.ingest import watermark
from inbox import db as inbox_db
from inbox.db import close_shared, redact
from inbox.inbox import Inbox
from inbox.postgres import InboxBusyError, PostgresInboxDb
from service.writer import InboxWriter, ReplayedSignatureError, Write
from warehouse.db import Migration, MigrationError

NOW = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)


def sms(n):
    return ("sms", f"SM{n:032d}", NOW, {"MessageSid": f"SM{n:032d}", "From": "+8613800000001"})


def applied(url):
    with psycopg.connect(url) as con:
        return con.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()


def test_instances_starting_together_migrate_once(postgres_inbox_url):
    together = threading.Barrier(4)

    def start(_):
        together.wait()
        # as a separate process would: its own pool, its own migration attempt
        db = PostgresInboxDb(postgres_inbox_url)
        try:
            with db.connection() as con:
                return con.execute(
                    "SELECT value FROM inbox_meta WHERE name = 'identity'"
                ).fetchone()
        finally:
            db.close()

    with ThreadPoolExecutor(4) as pool:
        identities = set(pool.map(start, range(4)))
    assert len(identities) == 1  # one inbox, made once
    every = inbox_db.available_migrations("inbox.migrations.postgres")
    assert applied(postgres_inbox_url) == [(m.version, m.name) for m in every]  # each once


def test_a_migration_edited_after_it_was_applied_is_refused(postgres_inbox_url, monkeypatch):
    Inbox(postgres_inbox_url)
    close_shared()
    originals = inbox_db.available_migrations("inbox.migrations.postgres")
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in originals]
    monkeypatch.setattr(inbox_db, "available_migrations", lambda package: edited)
    with pytest.raises(MigrationError, match="inbox migration 1_inbox changed after"):
        Inbox(postgres_inbox_url)


def test_an_unreachable_inbox_is_named_without_its_password():
    url = "postgresql://careloop:s3cret@127.0.0.1:1/nowhere"
    with pytest.raises(ConnectionError) as caught:
        Inbox(url)
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://careloop:s3cret@db:5432/inbox",
        "postgresql://careloop:s3@cret@db/inbox",  # an unescaped @ in the password
        "postgresql://db/inbox?user=careloop&password=s3cret",
        "postgresql://careloop@db/inbox?sslpassword=s3cret&password=s3cret&sslmode=require",
    ],
)
def test_a_url_is_shown_without_its_passwords(url):
    shown = redact(url)
    assert "s3cret" not in shown and "cret" not in shown and "db" in shown
    assert "***" in shown and "careloop" in shown


def test_an_id_that_commits_after_a_higher_one_is_still_collected(postgres_inbox_url, con):
    """Instance A draws id 1 and is slow to commit; instance B commits id 2. A collect in
    between must not move past 1: here it waits for A (A commits while it waits), and takes
    both. A drain by "ids above the last one seen" would have lost id 1 for good."""
    inbox = Inbox(postgres_inbox_url)
    slow = inbox.db.dedicated()
    try:
        slow.execute("BEGIN")
        inbox.insert(slow, [sms(1)])
        inbox.put_many([sms(2)])
        drained: list[str] = []
        drain = threading.Thread(
            target=lambda: drained.extend(i.dedupe_key for b in inbox.after(0) for i in b)
        )
        drain.start()
        _until_blocked_or_done(postgres_inbox_url, drain)  # observed, not slept
        slow.execute("COMMIT")
        drain.join()
    finally:
        slow.close()
    assert drained == [sms(1)[1], sms(2)[1]]
    figures = collect(con, inbox, reply_window=timedelta(hours=72))
    assert figures.drained == 2 and watermark(con, inbox) == 2


def _until_blocked_or_done(url, drain):
    """Until the drain waits on a lock (or has finished without waiting)."""
    with psycopg.connect(url, autocommit=True) as con:
        while drain.is_alive():
            row = con.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if row[0]:
                return
            drain.join(0.005)


def test_a_writer_stuck_past_the_timeout_fails_the_drain_loudly(postgres_inbox_url, monkeypatch):
    from inbox import postgres as inbox_postgres

    monkeypatch.setattr(inbox_postgres, "DRAIN_LOCK_TIMEOUT", "200ms")
    inbox = Inbox(postgres_inbox_url)
    stuck = inbox.db.dedicated()
    try:
        stuck.execute("BEGIN")
        inbox.insert(stuck, [sms(1)])
        with pytest.raises(InboxBusyError, match="nothing was skipped"):
            list(inbox.after(0))
        stuck.execute("COMMIT")
    finally:
        stuck.close()
    assert [i.dedupe_key for b in inbox.after(0) for i in b] == [sms(1)[1]]


def test_a_watermark_belongs_to_its_inbox(settings, postgres_inbox_url, con):
    """Moving a warehouse from its SQLite inbox to PostgreSQL's reads the new one from its
    start: the old inbox's ids mean nothing there."""
    file_inbox = Inbox(settings.inbox_path)
    file_inbox.put_many([sms(n) for n in range(1, 6)])
    collect(con, file_inbox, reply_window=timedelta(hours=72))
    shared = Inbox(postgres_inbox_url)
    shared.put_many([sms(n) for n in range(6, 9)])
    figures = collect(con, shared, reply_window=timedelta(hours=72))
    assert figures.drained == 3
    assert (watermark(con, file_inbox), watermark(con, shared)) == (5, 3)


def test_a_signature_replayed_through_another_instance_is_refused(postgres_inbox_url):
    first, second = Inbox(postgres_inbox_url), Inbox(postgres_inbox_url)
    item = sms(1)

    async def scenario():
        a, b = InboxWriter(first), InboxWriter(second)
        await a.start()
        await b.start()
        await a.write(Write([item], "sig-1", item[1]))
        other = sms(2)
        with pytest.raises(ReplayedSignatureError):
            await b.write(Write([other], "sig-1", other[1]))  # same signature, re-split SID
        await b.write(Write([item], "sig-1", item[1]))  # Twilio's own retry: accepted, once
        await a.stop()
        await b.stop()

    asyncio.run(scenario())
    assert first.count() == 1


def test_one_clarifying_reply_per_sender_across_instances(postgres_inbox_url):
    instances = [Inbox(postgres_inbox_url) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda n: instances[n % 4].may_clarify("+8613800000001", NOW, 72), range(40))
        )
    assert answers.count(True) == 1
    assert instances[0].may_clarify("+8613800000001", NOW + timedelta(hours=72), 72)


@pytest.mark.parametrize("whole", [True, False])
def test_a_managers_change_racing_a_publish_survives_it(postgres_inbox_url, whole):
    """A change from one instance while the flow publishes (every board, or the case alone):
    the board shows it either way, once."""
    board = Board(Inbox(postgres_inbox_url))
    case = {"case_id": "E1", "store_id": "ST1", "status": "open", "events": []}
    update = BoardUpdate([{"store_id": "ST1"}], [case], [], whole=whole, shape="test")
    board.publish(update, at=NOW, collected_up_to=0)
    change = {"case_id": "E1", "store_id": "ST1", "action": "contacted", "at": NOW.isoformat()}

    def manager():
        with board.db.connection() as con, board.db.transaction(con):
            return board.record_change(con, "E1:contacted:1", change)

    def publish():
        board.publish(update, at=NOW, collected_up_to=0)

    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(manager), *[pool.submit(publish) for _ in range(5)]]
        assert done[0].result() is True
        for future in done[1:]:
            future.result()
    shown = board.case("ST1", "E1")
    assert shown["status"] == "contacted"
    assert [e["to"] for e in shown["events"]] == ["contacted"]


def test_a_writer_whose_connection_died_writes_on_a_new_one(postgres_inbox_url):
    """A database restart between two groups (here: the writer's backend terminated) costs
    the next request nothing: the group is written again on a new connection."""
    inbox = Inbox(postgres_inbox_url)

    async def scenario():
        writer = InboxWriter(inbox)
        await writer.start()
        await writer.write(Write([sms(1)]))
        backend = await writer.run_in_writer(lambda: writer._con.raw.info.backend_pid)
        with psycopg.connect(postgres_inbox_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        await writer.write(Write([sms(2)]))  # would raise without the retry
        await writer.stop()

    asyncio.run(scenario())
    assert inbox.count() == 2
