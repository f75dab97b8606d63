"""Flow commands beside `make up` run in a fork of the stack's warm runner (careloop.runner):
real stack, real `careloop` processes, real signals. Each command's outcome (output, exit code)
is the one it has run in its own process, and when there is no runner to answer, it runs
there."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from careloop.runner import CONNECT_SECONDS, SOCKET_FILE
from tests.test_prefect_server import free_port, until
from warehouse.turn import SENDING, turn

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LEFT_OUT = ("PREFECT_API_URL", "CARELOOP_IN_PROCESS", "LD_PRELOAD", "FAKETIME", "CARELOOP_HOME")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`make up` for a home of its own, on ports of its own: (env, home, the runner's pid)."""
    home = tmp_path_factory.mktemp("runner") / "care"
    env = {
        **{k: v for k, v in os.environ.items() if k not in LEFT_OUT},
        "CARELOOP_HOME": str(home),
        "CARELOOP_PREFECT_PORT": str(free_port()),
        "CARELOOP_SERVICE_PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "careloop.stack"]
    try:
        up = subprocess.run([*command, "up"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"warm runner      {home / 'run' / SOCKET_FILE}" in up.stdout
        yield env, home, int((home / "run" / "runner.pid").read_text())
    finally:
        subprocess.run([*command, "down"], env=env, cwd=ROOT, capture_output=True, check=False)


def careloop(env, *args, **extra):
    return subprocess.run(
        [BIN / "careloop", *args],
        env={**env, **extra},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def ran_by_runner(home):
    """The commands the runner has run, as its log says how each ended."""
    return [ln for ln in (home / "run" / "runner.log").read_text().splitlines() if "command" in ln]


def test_a_flow_command_runs_in_a_fork_of_the_runner_and_ends_with_its_command(stack):
    env, home, runner = stack
    careloop(env, "migrate")  # the warehouse exists: collect's turn files go beside it
    with turn(home / "warehouse.duckdb", "the test", kind=SENDING):
        # collect waits for the sending turn the test holds: its processes can be looked at
        command = waiting_collect(env, home)
        (child,) = children(runner)  # the flow waits in a fork of the runner ...
        maps = Path(f"/proc/{command.pid}/maps").read_text()
        assert "duckdb" not in maps and "polars" not in maps  # ... not in the command
        # meanwhile another command goes through the runner, in a child of its own
        assert careloop(env, "collect", "--bogus").returncode == 2
        assert ran_by_runner(home)[-1].endswith(": exit 2") and children(runner) == [child]

        command.send_signal(signal.SIGTERM)  # the command's SIGTERM reaches the flow ...
        forked = command.wait(timeout=60)
        until(lambda: child not in children(runner), "the child to end and be reaped")
        own = waiting_collect(env, home, CARELOOP_IN_PROCESS="1")
        own.send_signal(signal.SIGTERM)
        assert forked == own.wait(timeout=60)  # ... and both end as it does in its process

        command = waiting_collect(env, home)
        (orphan,) = children(runner)
        command.kill()  # SIGKILL: the child sees its command's connection close and stops
        command.wait()
        until(lambda: not children(runner), "the orphaned child to stop and be reaped")
    assert ran_by_runner(home)[-1] == f"command {orphan}: signal {signal.SIGTERM.value}"
    assert careloop(env, "collect").returncode == 0  # and the runner goes on


def waiting_collect(env, home, **extra):
    """`careloop collect` started, once it says it waits for the sending turn."""
    stderr = home / f"collect-{len(list(home.glob('collect-*')))}.err"
    with stderr.open("w") as err:
        command = subprocess.Popen(
            [BIN / "careloop", "collect"], env={**env, **extra}, cwd=ROOT, stderr=err
        )
    until(lambda: "waiting to send: held by the test" in stderr.read_text(), "collect to wait")
    return command


CASES = {
    "success": (["collect"], {}, 0),
    "usage error": (["collect", "--bogus"], {}, 2),
    "failure": (["collect"], {"CARELOOP_INBOX_URL": "sqlite:///" + str(ROOT)}, 1),  # a folder
}


@pytest.mark.parametrize("case", CASES)
def test_the_runner_answers_as_the_command_in_its_own_process(stack, case):
    env, home, _ = stack
    args, extra, code = CASES[case]
    before = len(ran_by_runner(home))
    forked = careloop(env, *args, **extra)
    (ran,) = ran_by_runner(home)[before:]
    assert ran.endswith(f": exit {code}")
    own = careloop(env, *args, **extra, CARELOOP_IN_PROCESS="1")
    assert len(ran_by_runner(home)) == before + 1  # the switch kept it in its own process
    assert (forked.returncode, forked.stdout, _own_words(forked.stderr)) == (
        own.returncode,
        own.stdout,
        _own_words(own.stderr),
    )
    assert forked.returncode == code, forked.stderr


def _own_words(said: str) -> str:
    """What a command says of itself: not that it waited for a turn the stack's scheduled
    runs held (a collect the schedule started in the same minute, as on a busy CI run); the
    wait's line and its "since" line after it."""
    kept: list[str] = []
    for line in said.splitlines(keepends=True):
        waited = bool(kept) and kept[-1].startswith("… waiting")
        if waited and line.startswith("since "):
            kept.pop()
            continue
        kept.append(line)
    return "".join(line for line in kept if not line.startswith("… waiting"))


def test_what_the_runner_does_not_take_runs_in_the_command(stack):
    env, home, _ = stack
    before = len(ran_by_runner(home))
    # a clock shifted for the command's own process stays in that process
    shifted = careloop(env, "--debug", "collect", "--bogus", FAKETIME="+1d")
    assert "run in this process: LD_PRELOAD or FAKETIME is set" in shifted.stderr
    assert len(ran_by_runner(home)) == before
    # runs reported elsewhere than the stack's server: the runner's child refuses, unseen
    elsewhere = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    refused = careloop(env, "--debug", "collect", "--bogus", **elsewhere)
    assert "the warm runner did not take it (PREFECT_API_URL names another" in refused.stderr
    assert "No such option: --bogus" in refused.stderr and refused.returncode == 2
    quiet = careloop(env, "collect", "--bogus", **elsewhere)
    assert quiet.stderr == "error: No such option: --bogus (see --help)\n"


def test_a_command_runs_itself_when_its_runner_is_gone_or_silent(tmp_path):
    """A runner killed (its socket left behind) or hung (connected, never answering): the
    command runs in its own process, saying why only under --debug."""
    run = tmp_path / "care" / "run"
    run.mkdir(parents=True)
    env = {**{k: v for k, v in os.environ.items() if k not in LEFT_OUT}}
    env["CARELOOP_HOME"] = str(tmp_path / "care")
    path = str(run / SOCKET_FILE)
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(path)  # nobody listens on it any more
    debug = careloop(env, "--debug", "run", "nosuch")
    assert "run in this process: the warm runner did not take it" in debug.stderr
    quiet = careloop(env, "run", "nosuch")
    assert quiet.returncode == 2
    assert quiet.stderr.startswith("error: unknown campaign 'nosuch'")
    assert quiet.stderr.count("\n") == 1
    Path(path).unlink()
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(path)
        silent.listen()  # connects, never answers
        debug = careloop(env, "--debug", "run", "nosuch")
    assert "did not take it (timed out)" in debug.stderr, (CONNECT_SECONDS, debug.stderr)
    assert "unknown campaign 'nosuch'" in debug.stderr  # --debug: with its traceback
