"""`make up` / `make down`: the whole stack on one machine, for marketing ops.

Up: a Prefect server (SQLite under ``$CARELOOP_HOME/prefect``, or PostgreSQL when
``PREFECT_API_DATABASE_CONNECTION_URL`` names one: its database is created if it is missing),
the ``careloop`` work pool, the deployments of ``prefect.yaml``, a worker, the feedback
service and the warm runner that flow commands fork from (careloop.runner), each in its own
process group with its log and pid file under ``$CARELOOP_HOME/run``.
Down: SIGTERM to every group, SIGKILL to what is left after a grace, so it returns within
``STOP_SECONDS + KILL_SECONDS`` and leaves nothing running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from careloop.deploy import BIN, ROOT, deploy_all
from careloop.runner import SOCKET_FILE
from careloop.runtime import STACK_API_FILE, STACK_PUBLIC_URL_FILE, answers
from core.errors import UserError
from core.files import close_home, owner_only_process, private_dir
from core.settings import load_settings, usable_home

PREFECT_PORT = int(os.environ.get("CARELOOP_PREFECT_PORT", "4200"))
SERVICE_PORT = int(os.environ.get("CARELOOP_SERVICE_PORT", "8000"))
STOP_SECONDS = 8.0
KILL_SECONDS = 1.0  # with the grace, make down returns within 10 s
PROCESSES = ("prefect-server", "worker", "service", "runner")
RUNNER_START_SECONDS = 120.0  # its imports take seconds, more on a busy machine


def environment(home: Path, timezone: str) -> dict[str, str]:
    return {
        **os.environ,
        "CARELOOP_HOME": str(home),
        "CARELOOP_TIMEZONE": timezone,  # prefect.yaml's daily schedules run in it
        "CARELOOP_PROJECT_DIR": str(ROOT),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        # careloop's own lines (a flow waiting for the warehouse, say) in each run's logs
        "PREFECT_LOGGING_EXTRA_LOGGERS": "careloop",
    }


def start(name: str, command: list[str], env: dict[str, str], run: Path) -> None:
    log = (run / f"{name}.log").open("a")
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (run / f"{name}.pid").write_text(str(process.pid))


def wait_for(url: str, what: str, run: Path, name: str, timeout: float = 90) -> None:
    """Until ``url`` answers, while the process ``name`` started is running: what answers
    is then its own (the ports were free before it started, ``_refuse_taken_ports``)."""
    pid = int((run / f"{name}.pid").read_text())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_running(pid):
            raise SystemExit(f"{what} stopped as it started: see {run / f'{name}.log'}")
        if answers(url):
            return
        time.sleep(0.25)  # not listening yet: ask again shortly
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f} s")


def _refuse_taken_ports() -> None:
    """A port in use (another home's stack, or any other program) is said before anything
    starts: the readiness checks would take the other program's answer for this stack's."""
    for port, setting in ((PREFECT_PORT, "CARELOOP_PREFECT_PORT"),
                          (SERVICE_PORT, "CARELOOP_SERVICE_PORT")):  # fmt: skip
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise SystemExit(
                    f"port {port} is in use (another home's stack, or another program): "
                    f"`make down` with that home, or set {setting} to a free port"
                ) from None


def wait_for_runner(run: Path) -> str:
    """Until the warm runner listens: its socket, or why flow commands run in their own
    process (they do when it is not there; the stack is still up)."""
    socket_path = run / SOCKET_FILE
    pid = int((run / "runner.pid").read_text())
    deadline = time.monotonic() + RUNNER_START_SECONDS
    while time.monotonic() < deadline and group_running(pid):
        if socket_path.exists():
            return f"{socket_path} (flow commands run in a fork of it)"
        time.sleep(0.25)  # still importing: look again shortly
    return f"not running (see {run / 'runner.log'}): flow commands run in their own process"


def up() -> None:
    started = time.monotonic()
    settings = load_settings()
    home = usable_home(settings).resolve()
    owner_only_process()  # the server, worker and service inherit it: their files are private
    close_home(home)
    run = private_dir(home / "run")
    _refuse_a_second_stack(home, run)
    _refuse_taken_ports()
    env = environment(home, settings.timezone)
    if "public_url" not in settings.model_fields_set:  # links must reach this stack's service
        env["CARELOOP_PUBLIC_URL"] = f"http://127.0.0.1:{SERVICE_PORT}"
    api = env["PREFECT_API_URL"]
    database = prefect_database(env)
    server = ["server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)]
    start("prefect-server", [str(BIN / "prefect"), *server], env, run)
    wait_for(f"{api}/health", "the Prefect server", run, "prefect-server")
    # careloop's own commands find the stack's API here (careloop.runtime), so a command run
    # beside the worker takes turns with it for the warehouse.
    (run / STACK_API_FILE).write_text(api)
    (run / STACK_PUBLIC_URL_FILE).write_text(env["CARELOOP_PUBLIC_URL"])
    # The warm runner imports while the deployments go up; flow commands fork from it. A
    # socket left by a killed one would pass for it until it listens.
    (run / SOCKET_FILE).unlink(missing_ok=True)
    start("runner", [str(BIN / "python"), "-m", "careloop.runner"], env, run)
    deploy_all(env, api, settings.timezone)
    start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "careloop"], env, run)
    service = [str(BIN / "careloop"), "serve", "--port", str(SERVICE_PORT)]
    start("service", service, env, run)
    wait_for(f"http://127.0.0.1:{SERVICE_PORT}/healthz", "the feedback service", run, "service")
    runner = wait_for_runner(run)
    print(f"Prefect UI       http://127.0.0.1:{PREFECT_PORT}")
    print(f"Prefect API      {api} (database: {database})")
    print(f"feedback service http://127.0.0.1:{SERVICE_PORT} (webhooks, links, /healthz)")
    print(f"managers' page   {env['CARELOOP_PUBLIC_URL']}/m/ (`careloop managers link STORE`)")
    print(f"warm runner      {runner}")
    print(f"logs and pids    {run}")
    print("careloop commands now report to this server; after editing prefect.yaml, redeploy")
    print("with `careloop deploy` (it keeps the daily schedules in the business timezone);")
    print(f"for `prefect` commands: export PREFECT_API_URL={api}")
    print(f"ready in {time.monotonic() - started:.1f} s; stop with `make down`")


def prefect_database(env: dict[str, str]) -> str:
    """Where the Prefect server keeps its state, for the start-up lines (never a password).
    A PostgreSQL database that does not exist yet is created: the server would only fail."""
    url = env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    if not url.startswith("postgresql"):
        return f"SQLite in {env['PREFECT_HOME']}"
    import psycopg
    from psycopg import sql

    from inbox.db import redact

    conninfo = url.replace("+asyncpg", "", 1)
    name = psycopg.conninfo.conninfo_to_dict(conninfo).get("dbname")
    try:
        with psycopg.connect(conninfo, dbname="postgres", autocommit=True) as con:
            if (
                name
                and not con.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
            ):
                con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"the Prefect database at {redact(url)} cannot be reached: {exc}"
        ) from None
    return f"PostgreSQL {redact(url)}"


def running_in(home: Path) -> list[str]:
    """The processes of a stack `make up` started for ``home`` that are running."""
    return [name for name, pid in _recorded(home / "run").items() if group_running(pid)]


def _refuse_a_second_stack(home: Path, run: Path) -> None:
    """A second `make up` would orphan the first stack's processes, beyond `make down`."""
    running = running_in(home)
    if running:
        raise SystemExit(
            f"already running for {home}: {', '.join(running)} (pids in {run}); `make down` first"
        )


def down() -> None:
    run = load_settings().home.resolve() / "run"
    (run / STACK_API_FILE).unlink(missing_ok=True)
    (run / STACK_PUBLIC_URL_FILE).unlink(missing_ok=True)
    groups = _recorded(run)
    for name in PROCESSES:
        (run / f"{name}.pid").unlink(missing_ok=True)
    # The server last: a worker stopping tells it so, and logged an error when it had gone.
    clients = {name: pid for name, pid in groups.items() if name != "prefect-server"}
    deadline = time.monotonic() + STOP_SECONDS
    for pid in clients.values():
        _signal(pid, signal.SIGTERM)
    _wait_until_stopped(clients, STOP_SECONDS / 2)
    if "prefect-server" in groups:
        _signal(groups["prefect-server"], signal.SIGTERM)
    _wait_until_stopped(groups, max(deadline - time.monotonic(), 0.0))
    for name, pid in groups.items():
        if group_running(pid):
            _signal(pid, signal.SIGKILL)
            print(f"{name} did not stop within {STOP_SECONDS:.0f} s: killed")
    _wait_until_stopped(groups, KILL_SECONDS)  # a kill takes effect when the process next runs
    (run / SOCKET_FILE).unlink(missing_ok=True)  # a killed runner leaves it behind
    print(f"stopped: {', '.join(groups) or 'nothing was running'}")


def _wait_until_stopped(groups: dict[str, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(group_running(pid) for pid in groups.values()):
        time.sleep(0.1)


def _recorded(run: Path) -> dict[str, int]:
    """The process groups a `make up` recorded in ``run``, by name."""
    recorded = {}
    for name in PROCESSES:
        path = run / f"{name}.pid"
        said = path.read_text().strip() if path.exists() else ""
        if said.isdigit():  # an empty one (a start cut short) records nothing
            recorded[name] = int(said)
    return recorded


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def group_running(pgid: int) -> bool:
    """Whether a process of the group is still running. An exited process stays a zombie
    until its parent reaps it, and a stopped stack's parent is init, which may take seconds
    (it does here): ``killpg(pgid, 0)`` still succeeds on a group of zombies, so on Linux the
    group's members are read from /proc instead."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(state != "Z" for state in _group_states(proc, pgid))


def _group_states(proc: Path, pgid: int) -> list[str]:
    """The state letter of each process in the group (stat: pid (comm) state ppid pgrp ...)."""
    states = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat)
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def stat_fields(stat: Path) -> list[str]:
    """A /proc stat file's fields after the command name (which may hold spaces and ')')."""
    return stat.read_text().rsplit(")", 1)[1].split()


if __name__ == "__main__":
    try:
        {"up": up, "down": down}[sys.argv[1]]()
    except UserError as exc:  # a setting or the home at fault: said, without a traceback
        raise SystemExit(str(exc)) from None
