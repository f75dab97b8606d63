"""What `make up` and `make demo` refuse before they start anything: ports another program
holds (the readiness checks took its answers for the new stack's, which never started), and
a demo home a stack runs on (the demo deleted it, pid files and database, and `make down`
then stopped nothing)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(home: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOP_", "PREFECT_"))}
    return env | {"CARELOOP_HOME": str(home), "PREFECT_HOME": str(home / "prefect"), **more}


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("which", ["CARELOOP_PREFECT_PORT", "CARELOOP_SERVICE_PORT"])
def test_make_up_on_a_port_in_use_says_so_and_starts_nothing(tmp_path, taken_port, which):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        other = free.getsockname()[1]
    ports = {"CARELOOP_PREFECT_PORT": str(other), "CARELOOP_SERVICE_PORT": str(other + 1)}
    env = _env(tmp_path / "care", **(ports | {which: str(taken_port)}))
    up = subprocess.run(
        [sys.executable, "-m", "careloop.stack", "up"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert up.returncode != 0
    assert f"port {taken_port} is in use" in up.stderr and which in up.stderr
    assert not list((tmp_path / "care" / "run").glob("*.pid"))  # nothing started


@pytest.mark.parametrize("home", ["shared/notes.txt", "shared/notes.txt/home"])
def test_make_up_on_a_home_it_cannot_have_says_why_without_a_traceback(tmp_path, home):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "notes.txt").write_text("someone else's\n")
    up = subprocess.run(
        [sys.executable, "-m", "careloop.stack", "up"],
        env=_env(tmp_path / home), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert up.returncode != 0
    assert "Traceback" not in up.stderr
    assert f"CARELOOP_HOME={tmp_path / home}" in up.stderr
    assert sorted(path.name for path in shared.iterdir()) == ["notes.txt"]  # nothing started


def test_the_demo_refuses_a_home_a_stack_runs_on_and_deletes_nothing(tmp_path):
    demo = tmp_path / "care" / "demo"
    (demo / "run").mkdir(parents=True)
    stack = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a stack's process group
    try:
        (demo / "run" / "service.pid").write_text(str(stack.pid))
        done = subprocess.run(
            [BIN / "careloop", "demo"], env=_env(tmp_path / "care"),
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        stack.kill()
        stack.wait()
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "a stack runs on the demo's home (service)" in said and "make down" in said
    assert (demo / "run" / "service.pid").read_text() == str(stack.pid)


def test_an_empty_pid_file_records_nothing(tmp_path):
    """A start cut short leaves one: `make demo` stopped on "invalid literal for int()"."""
    from careloop.stack import running_in

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "worker.pid").write_text("")
    assert running_in(tmp_path) == []
