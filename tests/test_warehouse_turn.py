"""Processes take turns at the warehouse file, as on a machine where the stack runs beside the
CLI: a holder killed with SIGKILL frees it at once, commands wait for a frozen holder (saying
whom for) and then succeed, and another home's warehouse never waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.settings import load_settings
from flows.common import send_due
from inbox.inbox import Inbox
from tests.test_live_providers import NOW
from tests.test_prefect_server import until
from tests.test_send_safety import crowd
from warehouse.db import connect, warehouse
from warehouse.turn import SENDING, current_holder, turn

HOLDER = """
import sys
from pathlib import Path
from warehouse.db import warehouse
with warehouse(Path(sys.argv[1]), holder="the test's holder") as con:
    con.execute("SELECT count(*) FROM subscribers").fetchall()
    print("held", flush=True)
    sys.stdin.readline()  # until the test says so, or dies
"""
CLI = [sys.executable, "-m", "careloop.cli"]
PATIENCE = 240  # seconds: a bound for a hung test on a loaded machine, never a pace


class Process:
    """A child whose output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its group, temporary Prefect server included, can be killed
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout
        for line in self.popen.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, text: str) -> None:
        with self._seen:
            found = self._seen.wait_for(
                lambda: any(text in line for line in self.lines) or self.popen.poll() is not None,
                timeout=PATIENCE,
            )
        assert found and any(text in line for line in self.lines), self.output

    def finish(self) -> int:
        code = self.popen.wait(timeout=PATIENCE)
        self._reader.join(timeout=PATIENCE)  # every line read
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "CARELOOP_HOME": str(home), "CARELOOP_PROVIDER": "sandbox"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "care"
    connect(home / "warehouse.duckdb").close()
    return home


@pytest.fixture
def holder(home: Path) -> Iterator[Process]:
    process = Process([sys.executable, "-c", HOLDER, str(home / "warehouse.duckdb")], os.environ)
    process.wait_for("held")
    yield process
    if process.popen.poll() is None:
        process.popen.kill()
        process.popen.wait()


def test_the_turn_says_who_holds_it_and_is_free_once_they_exit(home, holder):
    warehouse_path = home / "warehouse.duckdb"
    assert current_holder(warehouse_path).startswith("the test's holder since ")
    assert holder.popen.stdin
    holder.popen.stdin.write("done\n")
    holder.popen.stdin.flush()
    assert holder.finish() == 0
    assert current_holder(warehouse_path) is None


RUNNING_SERVER = """
from careloop.runtime import temporary_server
print(temporary_server(), flush=True)
input()
"""


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[str]:
    """A Prefect server that outlives the commands, as `make up`'s does."""
    env = {**home_env(tmp_path / "server-home"), "PREFECT_HOME": str(tmp_path / "prefect")}
    server = Process([sys.executable, "-c", RUNNING_SERVER], env)
    server.wait_for("http://")
    yield next(line.strip() for line in server.lines if line.startswith("http://"))
    os.killpg(server.popen.pid, signal.SIGTERM)
    server.popen.wait(timeout=PATIENCE)


def test_a_flow_killed_with_sigkill_holding_the_warehouse_leaves_it_to_the_next(home):
    """No Prefect server but the command's own temporary one, which dies with it."""
    kill_a_collect_holding_the_warehouse(home, home_env(home))


def test_the_same_beside_a_running_prefect_server(home, running_server):
    env = {**home_env(home), "PREFECT_API_URL": running_server}
    kill_a_collect_holding_the_warehouse(home, env)


def kill_a_collect_holding_the_warehouse(home: Path, env: dict[str, str]) -> None:
    """A collect with a long inbox is killed while it has the warehouse open; the next
    collect gets the warehouse and finishes, every reply taken once."""
    at = datetime.now(UTC)
    Inbox(home / "inbox.sqlite").put_many(
        ("sms", f"SM{n:032x}", at, {"From": "+8613800000001", "Body": "5"}) for n in range(60_000)
    )
    first = Process([*CLI, "collect"], env)
    warehouse_path = home / "warehouse.duckdb"
    until_it_holds(first, warehouse_path)
    assert first.popen.poll() is None, first.output  # killed while it held the warehouse
    servers = children(first.popen.pid)
    assert bool(servers) == ("PREFECT_API_URL" not in env), "a temporary server, and only then"
    first.popen.send_signal(signal.SIGKILL)  # the command alone: its server must go with it
    first.popen.wait()
    until(lambda: not any(running(pid) for pid in servers), "its server to stop", PATIENCE)
    second = Process([*CLI, "collect"], env)
    assert second.finish() == 0, second.output
    with warehouse(warehouse_path) as con:
        assert con.execute("SELECT count(*) FROM evaluations").fetchone() == (60_000,)


def until_it_holds(collect: Process, warehouse_path: Path) -> None:
    """Until the collect flow holds the warehouse, or has ended."""

    def held() -> bool:
        holder = current_holder(warehouse_path) or ""
        return "collect-feedback (flow run" in holder or collect.popen.poll() is not None

    until(held, "the collect to hold the warehouse", PATIENCE)


def children(pid: int) -> list[int]:
    return [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if _stat(stat)[1:2] == [str(pid)]
    ]


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits a while for init to reap it here)."""
    return _stat(Path(f"/proc/{pid}/stat"))[:1] not in ([], ["Z"])


def _stat(path: Path) -> list[str]:
    """State and parent pid of a /proc stat file; [] once the process is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, IndexError):
        return []


def test_commands_wait_for_a_frozen_flow_then_succeed_and_another_home_does_not_wait(
    home, tmp_path
):
    """A collect frozen (SIGSTOP) while it holds the warehouse: report, segment preview and
    load stores on its home wait, saying for whom, and succeed once it goes on; a collect on
    another home does not wait at all."""
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "store_id,name,city,region,timezone,manager_name,manager_email\n"
        "ST1,Store 1,Shanghai,East,Asia/Shanghai,Li Lei,li@example.com\n"
    )
    at = datetime.now(UTC)
    Inbox(home / "inbox.sqlite").put_many(
        ("sms", f"SM{n:032x}", at, {"From": "+8613800000001", "Body": "5"}) for n in range(60_000)
    )
    env = home_env(home)
    flow = Process([*CLI, "collect"], env)
    warehouse_path = home / "warehouse.duckdb"
    until_it_holds(flow, warehouse_path)
    flow.popen.send_signal(signal.SIGSTOP)
    try:
        assert flow.popen.poll() is None, flow.output  # frozen while it held the warehouse
        waiting = [
            Process([*CLI, "report", "--format", "json"], env),
            Process([*CLI, "segment", "preview", "birthday", "--as-of", "2026-03-01"], env),
            Process([*CLI, "load", "stores", str(stores)], env),
        ]
        for command in waiting:
            command.wait_for("waiting for the warehouse: held by collect-feedback (flow run")
        # Another home has a warehouse of its own: its collect does not wait for this one.
        other = Process([*CLI, "collect"], home_env(tmp_path / "other"))
        assert other.finish() == 0, other.output
        assert "waiting for the warehouse" not in other.output
        assert all(command.popen.poll() is None for command in waiting)
    finally:
        flow.popen.send_signal(signal.SIGCONT)
    assert flow.finish() == 0, flow.output
    for command in waiting:
        assert command.finish() == 0, command.output
    with warehouse(warehouse_path) as con:
        assert con.execute("SELECT store_id FROM stores").fetchall() == [("ST1",)]
        assert con.execute("SELECT count(*) FROM evaluations").fetchone() == (60_000,)


def test_a_dispatch_lets_the_warehouse_go_while_the_provider_answers(fakes, monkeypatch):
    """While the provider holds a send open, a report on the same home finishes at once; a
    second dispatch waits to send (it must not settle the first one's actions in flight as
    if their run had died), and so does a collect: every message reaches Twilio once."""
    twilio, _, _ = fakes
    monkeypatch.setenv("CARELOOP_PROVIDER_TIMEOUT_SECONDS", "600")
    settings = load_settings()
    with warehouse(settings.warehouse_path) as con:
        crowd(con, settings, 3)
    twilio.state.gate = threading.Event()
    figures: list[dict[str, Any]] = []
    sender = threading.Thread(target=lambda: figures.append(send_due(settings, NOW, False)))
    sender.start()
    try:
        assert twilio.state.arrived.wait(PATIENCE)  # a send waits on the provider
        assert current_holder(settings.warehouse_path) is None
        assert current_holder(settings.warehouse_path, SENDING)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        report = Process([*CLI, "report", "--format", "json"], env)
        assert report.finish() == 0, report.output
        second = Process([*CLI, "dispatch"], env)
        second.wait_for("waiting to send: held by")
        # Nor may a collect read a status or a reply for a send not yet recorded.
        collect = Process([*CLI, "collect"], env)
        collect.wait_for("waiting to send: held by")
    finally:
        twilio.state.gate.set()
        sender.join(PATIENCE)
    assert second.finish() == 0, second.output
    assert collect.finish() == 0, collect.output
    assert figures[0]["sent"] == {"sms": 3}
    assert len(twilio.state.messages) == 3
    with warehouse(settings.warehouse_path) as con:
        assert con.execute("SELECT status, count(*) FROM care_actions GROUP BY ALL").fetchall() == [
            ("sent", 3)
        ]


def test_the_sending_turn_is_taken_before_the_warehouse_and_once_per_process(home):
    warehouse_path = home / "warehouse.duckdb"
    with (
        warehouse(warehouse_path),
        pytest.raises(RuntimeError, match="never inside it"),
        turn(warehouse_path, kind=SENDING),
    ):
        pass
    with (
        turn(warehouse_path, kind=SENDING),
        pytest.raises(RuntimeError, match="one sender"),
        turn(warehouse_path, kind=SENDING),
    ):
        pass
    with turn(warehouse_path, kind=SENDING), warehouse(warehouse_path):
        assert current_holder(warehouse_path, SENDING) and current_holder(warehouse_path)
