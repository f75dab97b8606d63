"""What a command costs above its work: `careloop` commands run as a person runs them (a new
process each time), against the same work done in one warm process without Prefect.

Each command runs three ways: with a temporary Prefect server (no stack: the command starts
one and stops it after), and beside a running stack (`make up` for the bench's home, on free
ports): in the command's own process (CARELOOP_IN_PROCESS=1), and as a person runs it there,
forked from the stack's warm runner (careloop.runner). The work baseline is the command's own
library calls, timed in a warm process without Prefect. Overhead = the command's wall time
minus its work; each figure is the median of a few runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
RUNS = 3
AS_OF = date(2026, 2, 28)
OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "False",
}
COMMANDS = {
    "--help": ["--help"],
    "collect (empty inbox)": ["collect"],
    "dispatch (nothing due)": ["dispatch"],
    "run birthday --no-send": ["run", "birthday", "--as-of", str(AS_OF), "--no-send"],
}


def _median_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def work_seconds(home: Path) -> dict[str, float]:
    """Each command's own work, in this warm process, no Prefect: the baseline. Like the
    commands, each runs once first (the campaign is planned then; later runs find it so)."""
    from campaigns.catalog import checked_campaign
    from campaigns.channels.factory import get_provider
    from campaigns.dispatch import dispatch
    from campaigns.planning import Plan, run_steps
    from cases.collect import collect
    from core.clock import utc_now
    from core.settings import load_settings
    from inbox.inbox import Inbox
    from warehouse.db import warehouse

    settings = load_settings(home=home)
    window = timedelta(hours=72)

    def collect_once() -> None:
        with warehouse(settings.warehouse_path) as con:
            collect(con, Inbox(settings.inbox_path), reply_window=window)

    def dispatch_once() -> None:
        with warehouse(settings.warehouse_path) as con:
            inbox = Inbox(settings.inbox_path)
            refresh = lambda: collect(con, inbox, reply_window=window)  # noqa: E731
            dispatch(con, get_provider(settings), now=utc_now(), refresh=refresh)

    def plan_once() -> None:
        loaded = checked_campaign(settings, "birthday")
        with warehouse(settings.warehouse_path) as con:
            run_steps(Plan(con, settings, loaded, AS_OF, round=1, run_id=f"b{time.time_ns()}"))

    work = {"--help": lambda: None, "collect (empty inbox)": collect_once}
    work |= {"dispatch (nothing due)": dispatch_once, "run birthday --no-send": plan_once}
    for action in work.values():
        action()
    return {name: _median_seconds(action) for name, action in work.items()}


def command_seconds(args: list[str], env: dict[str, str]) -> float:
    def run() -> None:
        done = subprocess.run(
            [str(BIN / "careloop"), *args], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"careloop {' '.join(args)}: {done.stderr[-1000:]}")

    run()  # a first run pays for a new Prefect database; people run commands again
    return _median_seconds(run)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prefect_server(home: Path, env: dict[str, str]) -> Iterator[str]:
    port = _port()
    api = f"http://127.0.0.1:{port}/api"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
    log = (home / "prefect-server.log").open("w")
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**env, "PREFECT_HOME": str(home / "server")},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{api}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)  # not listening yet
        yield api
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


@contextmanager
def running_stack(env: dict[str, str]) -> Iterator[None]:
    """`make up` for the bench's home (server, worker, service, warm runner); `make down` after."""
    env = {**env, "CARELOOP_PREFECT_PORT": str(_port()), "CARELOOP_SERVICE_PORT": str(_port())}
    stack = [sys.executable, "-m", "careloop.stack"]
    try:
        up = subprocess.run([*stack, "up"], env=env, capture_output=True, text=True, check=False)
        if up.returncode or "flow commands run in a fork" not in up.stdout:
            raise RuntimeError(f"make up for the benchmark: {up.stdout[-1000:]}{up.stderr[-1000:]}")
        yield
    finally:
        subprocess.run([*stack, "down"], env=env, capture_output=True, check=False)


def main(bench_home: Path) -> list[str]:
    from core.settings import load_settings
    from demo.data import build_demo_data
    from warehouse.db import warehouse

    home = bench_home / "cli-bench"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with warehouse(load_settings(home=home).warehouse_path) as con:
        build_demo_data(con, subscribers=50_000, seed=7, until=AS_OF, history_before=AS_OF)
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env = {**base, **OFFLINE, "CARELOOP_HOME": str(home), "PREFECT_HOME": str(home / "cli")}
    work = work_seconds(home)
    temporary = {name: command_seconds(args, env) for name, args in COMMANDS.items()}
    with running_stack(env):
        own = {
            name: command_seconds(args, {**env, "CARELOOP_IN_PROCESS": "1"})
            for name, args in COMMANDS.items()
        }
        forked = {name: command_seconds(args, env) for name, args in COMMANDS.items()}
    lines = ["cli: median of 3 runs after a first; overhead = wall time - the work in process"]
    for name in COMMANDS:
        lines.append(
            f"cli {name}: work {work[name]:.2f} s; with a temporary Prefect server "
            f"{temporary[name]:.2f} s (overhead {temporary[name] - work[name]:.2f} s); "
            f"beside the stack, in its own process {own[name]:.2f} s (overhead "
            f"{own[name] - work[name]:.2f} s), forked from the warm runner {forked[name]:.2f} s "
            f"(overhead {forked[name] - work[name]:.2f} s, {own[name] / forked[name]:.1f}x "
            f"faster than in its own process; {_times(forked[name], work[name])})"
        )
    return lines


def _times(seconds: float, work: float) -> str:
    """The command's wall time against its work done in a warm process."""
    return f"{seconds / work:.1f}x the work" if work >= 0.01 else "no work to compare"


if __name__ == "__main__":
    print("\n".join(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".careloop/bench"))))
