"""End to end against a real Prefect server, as marketing ops run careloop: the server on
loopback with its own PREFECT_HOME, the work pool, `prefect deploy --all` of prefect.yaml,
the scheduler creating scheduled runs, and a worker running a triggered deployment to
Completed, its result in the warehouse and its artifact readable through the API."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests
import yaml

from careloop.stack import group_running, stat_fields
from demo.data import build_demo_data
from inbox.inbox import Inbox
from warehouse.db import connect
from warehouse.turn import current_holder

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until(condition, what, timeout=120):
    """Poll ``condition`` until it holds (observed progress), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(0.25)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def prefect_database(request):
    """Environment for the Prefect server's database: its SQLite default, or (with the
    parameter "postgres") a new database on the machine's PostgreSQL, and careloop's inbox
    there too: the whole stack on PostgreSQL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield {}
        return
    from tests.postgres import fresh_database_name, fresh_schema, prefect_url, reachable_server

    url = reachable_server()
    with fresh_database_name(url) as name, fresh_schema(url) as inbox_url:
        yield {
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_url(url, name),
            "CARELOOP_INBOX_URL": inbox_url,
        }


@pytest.fixture
def server(tmp_path, prefect_database):
    port = free_port()
    if prefect_database:  # the stack creates its database; a bare server needs it made
        from careloop.stack import prefect_database as ensure

        ensure(prefect_database)
    env = {
        **prefect_database,
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "CARELOOP_PROJECT_DIR": str(ROOT),
        "CARELOOP_HOME": str(tmp_path / "care"),
        "CARELOOP_TIMEZONE": "Asia/Tokyo",  # not the default: the schedules must follow it
    }
    env.pop("PREFECT_API_KEY", None)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = env["PREFECT_API_URL"]
    try:
        until(lambda: _ok(f"{api}/health"), "the Prefect server to answer /api/health")
        yield api, env, tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _ok(url):
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False


def prefect(env, *args, timeout=180):
    done = subprocess.run(
        [BIN / "prefect", "--no-prompt", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# The runs a test triggers go to a queue of their own, and its worker serves only that queue:
# a scheduled run falling due meanwhile (second-round-hourly at :30, say) stays out of the test.
TRIGGERED = "test-triggered"
RUN_ONCE = ("--work-queue", TRIGGERED, "--run-once", "--limit", "4")


def trigger(api, deployment_id, parameters=None):
    """A run of the deployment now, on the test's own queue (the server creates it)."""
    body = {"parameters": parameters or {}, "work_queue_name": TRIGGERED}
    return post(api, f"/deployments/{deployment_id}/create_flow_run", body)


def run_worker_once(env):
    """A worker that runs every flow run due in the test's queue, then exits. With a limit, a
    run-once worker waits for its runs to finish before it exits; without one it may tear down
    while a run waits for the warehouse slot, leaving that run Running for ever."""
    succeeds([BIN / "prefect", "worker", "start", "--pool", "careloop", *RUN_ONCE], env)


def succeeds(command, env, cwd=ROOT):
    """Run a command to its end (bounded for a hung one) and expect it to succeed."""
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def final_state(api, run_id):
    """The run's state once it is final (polled: observed progress)."""

    def final():
        state = requests.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state"]
        return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

    return until(final, f"flow run {run_id} to finish")


def post(api, path, body=None):
    """POST to the API, retrying what Prefect's own client retries: a 503 is the server's
    SQLite busy under load (Prefect issues #18934, #19771), not an answer."""
    for attempt in range(6):
        response = requests.post(f"{api}{path}", json=body or {}, timeout=30)
        if response.status_code not in (429, 502, 503):
            break
        threading.Event().wait(0.5 * 2**attempt)  # back off, as the Prefect client does
    response.raise_for_status()
    return response.json()


@pytest.mark.parametrize("prefect_database", ["sqlite", "postgres"], indirect=True)
def test_deploy_schedule_and_run_on_a_real_server(server):
    api, env, _ = server
    con = connect(Path(env["CARELOOP_HOME"]) / "warehouse.duckdb")
    build_demo_data(con, subscribers=500, seed=3, until=date(2026, 3, 1))
    con.close()
    prefect(env, "work-pool", "create", "careloop", "--type", "process")
    prefect(env, "deploy", "--all")
    deployed = post(api, "/deployments/filter")
    deployments = {d["name"]: d["id"] for d in deployed}
    assert set(deployments) == {d["name"] for d in DEPLOYMENTS}
    zones = {d["name"]: {s["schedule"]["timezone"] for s in d["schedules"]} for d in deployed}
    assert zones["birthday-daily"] == zones["tenure-daily"] == {"Asia/Tokyo"}
    assert zones["collect-feedback"] == {"UTC"}

    def scheduled_deployments():
        runs = post(
            api, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
        )
        return {r["deployment_id"] for r in runs} >= set(deployments.values())

    until(scheduled_deployments, "the scheduler to create scheduled runs for every deployment")

    # a scheduled run falling due meanwhile, on its deployment's queue (as at hh:30 for this
    # one, whose second round would add a campaign run of its own): it must stay out
    due = post(api, f"/deployments/{deployments['second-round-hourly']}/create_flow_run")
    run = trigger(
        api,
        deployments["birthday-daily"],
        {"campaign": "birthday", "as_of": "2026-02-27", "send": False},
    )
    run_worker_once(env)
    state = final_state(api, run["id"])
    assert state["type"] == "COMPLETED", state
    assert requests.get(f"{api}/flow_runs/{due['id']}", timeout=10).json()["state"]["type"] == (
        "SCHEDULED"
    )
    con = connect(Path(env["CARELOOP_HOME"]) / "warehouse.duckdb")
    recorded = con.execute(
        "SELECT as_of, flow_run_id FROM campaign_runs WHERE campaign_id = 'birthday'"
    ).fetchall()
    planned = con.execute("SELECT count(*) FROM care_actions").fetchone()[0]
    con.close()
    assert recorded == [(date(2026, 2, 27), run["id"])] and planned > 0
    artifacts = post(
        api, "/artifacts/filter", {"artifacts": {"key": {"any_": ["care-loop-birthday"]}}}
    )
    assert artifacts and artifacts[0]["flow_run_id"] == run["id"]
    figures = {row["figure"]: row["value"] for row in _table(artifacts[0]["data"])}
    assert figures["targeted"] == planned


def _table(data):
    import json

    return json.loads(data) if isinstance(data, str) else data


def test_two_warehouse_writers_triggered_at_once_take_turns(server):
    api, env, _ = server
    # A long collect holds the warehouse while the dispatch starts beside it: without the
    # turn the second process fails to open the file (DuckDB has one writer).
    home = Path(env["CARELOOP_HOME"])
    connect(home / "warehouse.duckdb").close()
    at = datetime.now(UTC)
    Inbox(home / "inbox.sqlite").put_many(
        ("sms", f"SM{n:032x}", at, {"From": "+8613800000001", "Body": "5"}) for n in range(60_000)
    )
    prefect(env, "work-pool", "create", "careloop", "--type", "process")
    prefect(env, "deploy", "--all")
    deployments = {d["name"]: d["id"] for d in post(api, "/deployments/filter")}
    runs = [trigger(api, deployments[name]) for name in ("collect-feedback", "dispatch-outbox")]
    run_worker_once(env)
    states = [final_state(api, run["id"])["type"] for run in runs]
    assert states == ["COMPLETED", "COMPLETED"]
    assert current_holder(home / "warehouse.duckdb") is None  # held in turn, then given back


@pytest.mark.parametrize("prefect_database", ["sqlite", "postgres"], indirect=True)
def test_make_up_starts_the_stack_and_make_down_leaves_nothing(tmp_path, prefect_database):
    prefect_port, service_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        **prefect_database,
        "CARELOOP_HOME": str(tmp_path / "care"),
        "CARELOOP_PREFECT_PORT": str(prefect_port),
        "CARELOOP_SERVICE_PORT": str(service_port),
    }
    stack = [sys.executable, "-m", "careloop.stack"]
    try:
        up = subprocess.run([*stack, "up"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{prefect_port}" in up.stdout
        engine = "PostgreSQL" if prefect_database else "SQLite"
        assert f"(database: {engine}" in up.stdout
        if prefect_database:  # the deployments live in PostgreSQL, not in a SQLite file
            _assert_deployments_in_postgres(prefect_database)
        assert _ok(f"http://127.0.0.1:{prefect_port}/api/health")
        assert _ok(f"http://127.0.0.1:{service_port}/healthz")
        deployed = post(f"http://127.0.0.1:{prefect_port}/api", "/deployments/filter")
        assert len(deployed) == len(DEPLOYMENTS)
        pids = [int(p.read_text()) for p in (tmp_path / "care" / "run").glob("*.pid")]
        assert len(pids) == 4  # the server, the worker, the service and the warm runner
        again = subprocess.run([*stack, "up"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert again.returncode != 0 and "already running" in again.stderr  # nothing orphaned
        assert sorted(
            int(p.read_text()) for p in (tmp_path / "care" / "run").glob("*.pid")
        ) == sorted(pids)
        # a careloop command run beside the stack reports to its server (and so takes turns
        # with the worker for the warehouse), with no PREFECT_API_URL set
        collect = subprocess.run(
            [BIN / "careloop", "collect"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        assert collect.returncode == 0, collect.stdout + collect.stderr
        api = f"http://127.0.0.1:{prefect_port}/api"
        assert f"flow runs: {api} (the stack" in " ".join(collect.stderr.split())
        ad_hoc = {"flow_runs": {"deployment_id": {"is_null_": True}}}
        runs = post(api, "/flow_runs/filter", ad_hoc)
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"]
        # a manager's sign-in link printed beside the stack reaches the stack's service (it
        # named the default port 8000, where nothing ran)
        service = f"http://127.0.0.1:{service_port}"
        assert f"managers' page   {service}/m/" in up.stdout
        stores = tmp_path / "stores.csv"
        stores.write_text(
            "store_id,name,city,region,timezone,manager_name,manager_email\n"
            "ST1,One,Shanghai,East,Asia/Shanghai,Wang,wang@example.com\n"
        )
        for command in (["load", "stores", str(stores)], ["managers", "link", "ST1"]):
            done = subprocess.run(
                [BIN / "careloop", *command], env=env, cwd=ROOT, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"{service}/m/"), done.stdout
    finally:
        started = time.monotonic()
        down = subprocess.run([*stack, "down"], env=env, cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - started
    assert down.returncode == 0 and took < 10, (took, down.stdout)
    assert not (tmp_path / "care" / "run" / "prefect-api-url").exists()
    assert not (tmp_path / "care" / "run" / "public-url").exists()
    assert not (tmp_path / "care" / "run" / "runner.sock").exists()
    assert not [pid for pid in pids if group_running(pid)]


def test_a_group_of_zombies_is_not_running():
    """What make down waits for: a process that exited but is not reaped yet (a stopped
    stack's processes wait for init to reap them) is not running, though killpg finds it."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    assert group_running(child.pid)
    child.kill()
    until(lambda: _state(child.pid) == "Z", "the child to exit, unreaped")
    os.killpg(child.pid, 0)  # the kernel still knows the group
    assert not group_running(child.pid)
    child.wait()


def _state(pid):
    return stat_fields(Path(f"/proc/{pid}/stat"))[0]


def _assert_deployments_in_postgres(database_env):
    import psycopg

    url = database_env["PREFECT_API_DATABASE_CONNECTION_URL"].replace("+asyncpg", "")
    with psycopg.connect(url) as con:
        (count,) = con.execute("SELECT count(*) FROM deployment").fetchone()
    assert count == len(DEPLOYMENTS)


def test_careloop_deploy_keeps_the_daily_schedules_in_the_business_timezone(server):
    """Redeploying as `make up` tells you to, with only PREFECT_API_URL set (a bare `prefect
    deploy --all` would give the daily schedules an empty timezone, run as UTC); from another
    folder, too. The settings' timezone is what the schedules get."""
    api, env, tmp_path = server

    def deploy(environment):
        succeeds([BIN / "careloop", "deploy"], environment, cwd=tmp_path)
        return {d["name"]: d["schedules"] for d in post(api, "/deployments/filter")}

    def zones(deployed):
        return {
            name: [s["schedule"]["timezone"] for s in sched] for name, sched in deployed.items()
        }

    def wanted(business):
        return {
            d["name"]: [
                business if s["timezone"].startswith("{{") else s["timezone"]
                for s in d["schedules"]
            ]
            for d in DEPLOYMENTS
        }

    only_the_api = {
        k: v for k, v in env.items() if k not in ("CARELOOP_TIMEZONE", "CARELOOP_PROJECT_DIR")
    }
    assert zones(deploy(only_the_api)) == wanted("Asia/Shanghai")  # the settings' default
    assert zones(deploy(env)) == wanted("Asia/Tokyo")  # CARELOOP_TIMEZONE, as set
