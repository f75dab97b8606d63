"""Where the flows a command runs report: the configured Prefect API, the stack that `make up`
started, or else a temporary server.

Turns at the warehouse do not depend on this choice (``warehouse.turn``: a lock on a file
beside it); a command beside `make up` reports to the stack's server so that its flow runs
show in the same UI as the worker's.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from core import EPHEMERAL_STARTUP_SECONDS

if TYPE_CHECKING:
    from core.settings import Settings

# Written by `make up` into $CARELOOP_HOME/run, removed by `make down`.
STACK_API_FILE = "prefect-api-url"
STACK_PUBLIC_URL_FILE = "public-url"  # where the stack's feedback service is reached


@dataclass(frozen=True)
class FlowApi:
    url: str | None  # None: Prefect starts a temporary server for this command
    source: str

    def describe(self) -> str:
        if self.url is None:
            # its runs stay in that home's database, seen by the next temporary server only
            prefect_home = os.environ.get("PREFECT_HOME", "~/.prefect")
            return (
                f"flow runs: a temporary Prefect server, recorded in {prefect_home} (no stack "
                "runs for this CARELOOP_HOME: `make up` with it, or PREFECT_API_URL, shows "
                "them in a UI)"
            )
        return f"flow runs: {self.url} ({self.source})"


def stack_api(home: Path) -> str | None:
    """The API of the stack `make up` started for this home, if it is up and answering."""
    marker = home / "run" / STACK_API_FILE
    if not marker.exists():
        return None
    url = marker.read_text().strip()
    # Not answering: a stale marker, the stack was killed without `make down`.
    return url if answers(f"{url}/health") else None


def stack_public_url(home: Path) -> str | None:
    """The stack's feedback service, as its links name it, if the stack is up: a sign-in
    link printed beside a stack on other ports named the default port, where nothing ran."""
    marker = home / "run" / STACK_PUBLIC_URL_FILE
    return marker.read_text().strip() if marker.exists() and stack_api(home) else None


SERVE_URL_FILE = "serve-url"  # a `careloop serve` of the home's own names itself, while it runs


def running_service(settings: Settings) -> str | None:
    """The home's feedback service, as links must name it when CARELOOP_PUBLIC_URL is unset:
    the stack's, or a `careloop serve` started for the home on its own port, if it answers.
    Links built beside one on another port named the default port, where nothing ran."""
    if "public_url" in settings.model_fields_set:
        return None  # CARELOOP_PUBLIC_URL names it
    home = settings.home
    stacked = stack_public_url(home)
    if stacked:
        return stacked
    marker = home / "run" / SERVE_URL_FILE
    url = marker.read_text().strip() if marker.exists() else None
    return url if url and answers(f"{url}/healthz") else None


@contextmanager
def naming_the_service(home: Path, url: str | None) -> Iterator[Callable[[], None]]:
    """Gives what `careloop serve` calls once it listens: then, and until it stops, its
    address (``url``; None when CARELOOP_PUBLIC_URL names it) is the home's SERVE_URL_FILE,
    which ``running_service`` reads. When it stops the file says again what it said before
    (another serve of the home's, say), or goes. uvicorn, after its shutdown, raises the
    SIGTERM it caught again under the handler it found: here an exit that runs this (the
    default ended the process at once). One a SIGKILL leaves is read only while it answers."""
    from core.files import private_dir, write_private_text

    marker = private_dir(home / "run") / SERVE_URL_FILE
    before = marker.read_text().strip() if marker.exists() else None
    named: list[str] = []

    def listening() -> None:
        if url:
            write_private_text(marker, url)
            named.append(url)

    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield listening
    finally:
        signal.signal(signal.SIGTERM, previous)
        ours = named and marker.exists() and marker.read_text().strip() == url
        if ours and before and before != url:
            write_private_text(marker, before)
        elif ours:
            marker.unlink()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def answers(url: str, timeout: float = 2) -> bool:
    """Whether a server answers a GET of ``url`` (its health route) now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except OSError:
        return False


def choose_api(home: Path) -> FlowApi:
    """PREFECT_API_URL when set; else the running stack's API (exported for Prefect, which
    reads it again in careloop.cli's flow session); else a temporary server."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return FlowApi(configured, "PREFECT_API_URL")
    stack = stack_api(home)
    if stack:
        os.environ["PREFECT_API_URL"] = stack
        return FlowApi(stack, "the stack `make up` started")
    return FlowApi(None, "temporary")


def temporary_server() -> str:
    """A temporary Prefect server for one command, as Prefect would start one itself, but tied
    to the command: the kernel stops it when the command dies, however it dies (Prefect's own
    outlived a command killed with SIGKILL, about 200 MB each, for ever). It exports the API as
    PREFECT_API_URL, so call it before prefect is imported; it stops at exit, after Prefect's
    own exit handlers (registered later, run first) have sent what they hold."""
    for _ in range(PORT_TRIES):
        server, url, log = _start_server()
        atexit.register(_stop, server)
        if _wait_for_health(server, url, log):
            os.environ["PREFECT_API_URL"] = url
            return url
    raise RuntimeError(f"the temporary Prefect server found no free port in {PORT_TRIES} tries")


PORT_TRIES = 3  # its port may be taken between choosing and binding: another one, then


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _start_server() -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    spec = importlib.util.find_spec("prefect")  # its folder, without importing it yet
    assert spec is not None and spec.origin is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent),
        "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    parent = os.getpid()
    # What it says, for the one line a failure is told in; open until the command exits.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    server = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C to the command's group leaves it to the command
        preexec_fn=lambda: _die_with(parent),
    )
    return server, f"http://127.0.0.1:{port}/api", log


def _die_with(parent: int) -> None:
    """In the server's process, before it runs: SIGTERM when the command's thread ends (the
    command calls this from its main thread), or at once if the command is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _wait_for_health(server: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> bool:
    """Until the server answers (a busy machine may take minutes): True; False when its port
    was taken; an error with the last thing it said when it failed otherwise."""
    deadline = time.monotonic() + EPHEMERAL_STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None and "address already in use" in _said(log).lower():
            return False
        if server.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server stopped: {_last_line(log)}")
        if answers(f"{url}/health"):
            return True
        time.sleep(0.1)  # not listening yet: ask again shortly
    raise RuntimeError(
        f"the temporary Prefect server did not answer within {EPHEMERAL_STARTUP_SECONDS} s"
    )


def _said(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def _last_line(log: IO[bytes]) -> str:
    """The cause: the last exception it printed (``sqlite3.OperationalError: unable to open
    database file``), else its last line."""
    said = [line.strip() for line in _said(log).splitlines() if line.strip()]
    causes = [line for line in said if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return (causes or said or ["it said nothing"])[-1]


@contextmanager
def in_process_flows() -> Iterator[None]:
    """Flows run in this process without Prefect's heartbeat thread: it sleeps in one-second
    steps and each flow waits for it at its end (about a second per flow, 90 s of a demo),
    and the person who started the command is watching it anyway. Deployed runs keep it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
