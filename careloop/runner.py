"""The stack's warm runner: a flow command without the wait for Prefect's imports.

A new `careloop` process spends seconds importing Prefect, polars and the flows before a flow
command does any work. `make up` starts one more process beside the server (careloop.stack):
this runner, which imports all of that once and nothing more (no Prefect client, thread or
event loop runs in it, so forking it is safe: the "preload" pattern of gunicorn). It listens on
``$CARELOOP_HOME/run/runner.sock`` (0600, in a 0700 folder).

A flow command (careloop.entry) connects and sends its arguments, environment, working folder
and umask. The runner forks a child, which checks that the command is this stack's to run
(same home, same code, the stack's Prefect API) and says it is ready; the command then passes
its stdin, stdout and stderr (SCM_RIGHTS). The child takes them all over and runs the command
exactly as `careloop` runs it in process (careloop.cli). The runner reaps the child and sends
back how it ended; the command exits the same way.

Signals: the command forwards SIGINT, SIGTERM and SIGHUP to the child over the connection; when
the command dies, however it dies (SIGKILL included), the child sees the connection close and
takes SIGTERM, as the command itself would have. Each command is a child of its own; turns at
the warehouse are per process (warehouse.turn), so concurrent commands wait for each other as
separate processes do.

The runner runs the code it imported at start: after changing careloop's code, `make down` and
`make up` (the stack's worker and service need that too).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

SOCKET_FILE = "runner.sock"  # in $CARELOOP_HOME/run, beside the stack's pid files
# How long a command waits for the runner to connect and start its child before it runs the
# command itself: a runner that answers at all answers in milliseconds.
CONNECT_SECONDS = 2.0
REQUEST_SECONDS = 5.0  # a child waits this long for a connected command's request
STOP_SECONDS = 5.0  # on SIGTERM: the children's grace (make down waits 8 s for the runner)
IN_PROCESS_VARIABLE = "CARELOOP_IN_PROCESS"  # =1: always run in the command's own process
FLOW_COMMANDS = frozenset({"run", "dispatch", "collect", "second-round", "demo"})
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a flow command imports, imported once here. Not careloop.cli: its consoles read the
# terminal when they are made, so each child imports it anew (typer and rich are warm by then).
PRELOAD = (
    "typer",
    "rich.console",
    "rich.progress",
    "yaml",
    "pandas",  # warehouse.db.query_frame's frames come through it: 0.4-0.9 s to import
    "prefect",
    "prefect.logging.configuration",
    "core.settings",
    "campaigns.catalog",
    "insights.report",
    "careloop.runtime",
    "careloop.display",
    "flows.care_loop",
    "flows.dispatch_outbox",
    "flows.collect_feedback",
    "flows.second_round",
    "flows.demo",
)


class RefusedError(Exception):
    """The runner will not run this command (another home, another API...): run it here."""


# --- the command's side ---------------------------------------------------------------------


def delegate(argv: list[str]) -> int | None:
    """Run a flow command in the warm runner of this home's stack: its exit status. None when
    it is to run in this process instead (why is said under --debug)."""
    if not _is_flow_command(argv):
        return None
    debug = "--debug" in argv[: argv.index(_command(argv))]
    path = _socket_path()
    reason = _why_not(path)
    if reason is None:
        try:
            conn, pid = _start(path, argv)
        except (OSError, RefusedError, ValueError) as exc:
            reason = f"the warm runner did not take it ({exc or type(exc).__name__})"
        else:
            if debug:
                _say(f"run by the stack's warm runner (pid {pid})")
            return _outcome(conn)
    if debug:
        _say(f"run in this process: {reason}")
    return None


def _command(argv: list[str]) -> str:
    """The command's name: the first argument that is not a leading option (``--debug``)."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def _is_flow_command(argv: list[str]) -> bool:
    return _command(argv) in FLOW_COMMANDS


def _socket_path() -> Path:
    """Where this home's runner listens. The home as the settings would find it, without
    loading them (that costs pydantic); a wrong guess only costs the fast path, because the
    child checks the home with the real settings and refuses another one."""
    home = os.environ.get("CARELOOP_HOME")
    if home is None and Path(".env").is_file():
        from dotenv import dotenv_values

        found = {k.upper(): v for k, v in dotenv_values(".env").items()}
        home = found.get("CARELOOP_HOME")
    return Path(home or ".careloop").absolute() / "run" / SOCKET_FILE


def _why_not(path: Path) -> str | None:
    """Why the command must run in this process, or None when it may go to the runner."""
    if os.environ.get(IN_PROCESS_VARIABLE, "") not in ("", "0"):
        return f"{IN_PROCESS_VARIABLE} is set"
    if "LD_PRELOAD" in os.environ or any(name.startswith("FAKETIME") for name in os.environ):
        return "LD_PRELOAD or FAKETIME is set: the command keeps its own process and clock"
    if not path.exists():
        return f"no warm runner at {path} (`make up` starts one)"
    return None


def _start(path: Path, argv: list[str]) -> tuple[socket.socket, int]:
    """Connected, the request sent and the child started: the connection and the child's pid."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_SECONDS)
    try:
        conn.connect(str(path))
        request = {
            "argv": [sys.argv[0], *argv],
            "env": dict(os.environ),
            "cwd": str(Path.cwd()),
            "umask": _umask(),
            "code": code_identity(),
        }
        body = json.dumps(request).encode()
        conn.sendall(struct.pack("!I", len(body)) + body)
        lines = _Lines(conn)
        _expect(lines, "ready")
        # The streams go only to a child that answered: a hung runner must not keep a pipe
        # the command writes to open after the command ran itself.
        socket.send_fds(conn, [b"s"], [0, 1, 2])
        pid = int(_expect(lines, "started"))
    except BaseException:
        conn.close()
        raise
    conn.settimeout(None)
    return conn, pid


def _expect(lines: _Lines, word: str) -> str:
    """The rest of the runner's next line when it starts with ``word``; else why it refused."""
    kind, _, detail = lines.next().partition(" ")
    if kind != word:
        raise RefusedError(detail or "it hung up")
    return detail


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def code_identity() -> str:
    """Which careloop and which Python: a runner of another checkout or venv is not ours."""
    return f"{Path(__file__).resolve().parent}|{sys.prefix}"


def _outcome(conn: socket.socket) -> int:
    """Forward signals to the child until the runner says how it ended; end the same way."""
    for signum in FORWARDED:
        signal.signal(signum, lambda signum, _frame: _send_quietly(conn, bytes([signum])))
    kind, _, value = _Lines(conn).next().partition(" ")
    if kind == "exit":
        return int(value)
    if kind == "signal":
        signum = signal.Signals(int(value))
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # ended by a signal, as the command run here would be
        return 128 + signum
    _say("error: the stack's warm runner stopped before the command ended (`make down`?)")
    return 1


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        conn.sendall(data)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Lines:
    """Newline-ended messages from a socket ("" at its end)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def next(self) -> str:
        data = b""
        while not data.endswith(b"\n"):
            chunk = self.conn.recv(1)  # messages are a few bytes: nothing read past one
            if not chunk:
                return ""
            data += chunk
        return data[:-1].decode()


# --- the runner -----------------------------------------------------------------------------


def main() -> None:  # pragma: no cover - `python -m careloop.runner`, a process of the stack
    """Import once, listen, and in each forked child run its command (then exit as it does)."""
    import importlib

    from core.settings import load_settings

    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:
        raise SystemExit(f"a thread started while importing: {threading.enumerate()}")
    home = load_settings().home.resolve()
    conn = Runner(home).serve()  # returns only in a child, with its command's connection
    run_command(conn, home)


class Runner:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "run" / SOCKET_FILE
        self.children: dict[int, socket.socket] = {}  # pid -> its command's connection
        self.stopping = False

    def serve(self) -> socket.socket:
        """Fork a child for each command until SIGTERM; then give the children a grace and
        return (exit). In a child it returns that child's connection."""
        wake_r, wake_w = socket.socketpair()
        for end in (wake_r, wake_w):
            end.setblocking(False)
        # Signals only wake the loop (SIGCHLD: reap; SIGTERM: stop): all work is done in it.
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        import selectors

        with _listening(self.path) as listener, selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in selector.select():
                    if key.fileobj is wake_r:
                        _drain(wake_r)
                    elif not self.stopping:
                        conn = self._accept(listener)
                        if conn is None:
                            continue
                        pid = os.fork()
                        if pid == 0:
                            self._become_child(listener, wake_r, wake_w, conn)
                            return conn
                        self.children[pid] = conn
                self._reap()
        self._stop_children(wake_r)
        raise SystemExit(0)

    @staticmethod
    def _accept(listener: socket.socket) -> socket.socket | None:
        """The next command's connection; None when the runner is out of descriptors (the
        command then finds no answer and runs in its own process)."""
        try:
            conn, _ = listener.accept()
        except OSError:
            return None
        return conn

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _stop_children(self, wake_r: socket.socket) -> None:
        """SIGTERM to the children still running (make down sends it to the whole group
        anyway); wait for them, reporting each to its command, within the grace."""
        for pid in self.children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        import select

        while self.children and time.monotonic() < deadline:
            select.select([wake_r], [], [], deadline - time.monotonic())
            _drain(wake_r)
            self._reap()

    def _reap(self) -> None:
        """Collect every child that ended (no zombies) and tell its command how."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            ending = _ending(status)
            print(f"command {pid}: {ending}", flush=True)  # the runner's log: nothing of its own
            if conn is not None:
                _send_quietly(conn, f"{ending}\n".encode())
                conn.close()

    def _become_child(
        self,
        listener: socket.socket,
        wake_r: socket.socket,
        wake_w: socket.socket,
        conn: socket.socket,
    ) -> None:
        """In the new child: none of the runner's signal handling, sockets or connections."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for other in (listener, wake_r, wake_w, *self.children.values()):
            other.close()
        self.children.clear()


@contextmanager
def _listening(path: Path) -> Iterator[socket.socket]:
    """The runner's socket: its folder 0700, the socket 0600; removed when the runner stops
    (a child leaving it only closes its copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)  # left by a runner that was killed: nobody listens on it
    owner = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    path.chmod(0o600)
    listener.listen(64)
    try:
        yield listener
    finally:
        listener.close()
        if os.getpid() == owner:
            path.unlink(missing_ok=True)


def _drain(wake_r: socket.socket) -> None:
    with suppress(BlockingIOError):
        while wake_r.recv(512):
            pass


def _ending(status: int) -> str:
    """``exit N`` or ``signal N``: how a child ended, for its command to end the same way."""
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


# --- the child --------------------------------------------------------------------------------


def run_command(conn: socket.socket, home: Path) -> None:
    """Take over the command's request and run it as careloop.cli runs it in process; its exit
    (SystemExit, an exception, a signal) becomes this process's, which the runner reports."""
    conn.settimeout(REQUEST_SECONDS)
    try:
        request = _receive(conn)
        _adopt(request)
        _check(request, home)
        conn.sendall(b"ready\n")
        streams = _receive_streams(conn)
        conn.sendall(f"started {os.getpid()}\n".encode())
    except (OSError, ValueError, RefusedError) as exc:
        _send_quietly(conn, f"refused {exc}\n".encode())
        os._exit(0)  # nothing of the command ran: the command runs it itself
    conn.settimeout(None)
    _take_streams(streams)
    _watch(conn)
    sys.argv = [str(arg) for arg in request["argv"]]  # type: ignore[attr-defined]
    os._exit(_run_cli())


def _run_cli() -> int:
    """careloop.cli.run_cli, and then what the interpreter does at exit that the command can
    see (its threads joined, exit handlers run, streams flushed), but not the teardown of every
    module the runner imported: that took seconds on a busy machine, for nothing."""
    import atexit

    from careloop.cli import run_cli

    try:
        run_cli()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:  # Python ends by SIGINT then, after its exit handlers
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    for thread in threading.enumerate():
        if not thread.daemon and thread is not threading.current_thread():
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code & 0xFF


def _exit_code(code: object) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _receive(conn: socket.socket) -> dict[str, object]:
    header = _exactly(conn, 4)
    (length,) = struct.unpack("!I", header)
    request = json.loads(_exactly(conn, length))
    if not isinstance(request, dict):
        raise ValueError("the request is not an object")
    return request


def _receive_streams(conn: socket.socket) -> list[int]:
    data, streams, _flags, _address = socket.recv_fds(conn, 1, 3)
    if data != b"s" or len(streams) != 3:
        for fd in streams:
            os.close(fd)
        raise ValueError("no stdin, stdout and stderr")
    return streams


def _exactly(conn: socket.socket, length: int) -> bytes:
    body = b""
    while len(body) < length:
        chunk = conn.recv(min(length - len(body), 1 << 16))
        if not chunk:
            raise ValueError("the request ended early")
        body += chunk
    return body


def _adopt(request: dict[str, object]) -> None:
    """The command's environment, folder and umask, before anything reads settings."""
    env, cwd, umask = request["env"], request["cwd"], request["umask"]
    if not (isinstance(env, dict) and isinstance(cwd, str) and isinstance(umask, int)):
        raise ValueError("a malformed request")
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.chdir(cwd)
    os.umask(umask)


def _check(request: dict[str, object], home: Path) -> None:
    """Only what the command would run in process against this stack: the same code, the same
    home and the Prefect API it would report to anyway (careloop.runtime.choose_api)."""
    from careloop.runtime import STACK_API_FILE
    from core.settings import load_settings

    if request.get("code") != code_identity():
        raise RefusedError(
            f"another careloop or Python (the command's {request.get('code')}, "
            f"the runner's {code_identity()})"
        )
    try:
        settings = load_settings()
    except Exception as exc:  # the command says what is wrong, in its own words
        raise RefusedError(f"its settings do not load: {type(exc).__name__}") from None
    if settings.home.resolve() != home:
        raise RefusedError(f"its home is {settings.home.resolve()}, this stack's {home}")
    configured = os.environ.get("PREFECT_API_URL")
    marker = home / "run" / STACK_API_FILE
    stack = marker.read_text().strip() if marker.exists() else None
    if configured and configured != stack:
        raise RefusedError("PREFECT_API_URL names another Prefect API")


def _take_streams(streams: list[int]) -> None:
    """The command's stdin, stdout and stderr become this process's; Python's streams buffer
    as they would for them (line by line on a terminal)."""
    for target, fd in zip((0, 1, 2), streams, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # type: ignore[union-attr]
    sys.stdin.reconfigure(line_buffering=os.isatty(0))  # type: ignore[union-attr]


def _watch(conn: socket.socket) -> None:
    """The command's signals arrive as bytes; its end (however it died) as the connection's
    end, and then this child stops as the command would have: SIGTERM."""

    def watch() -> None:
        while True:
            try:
                data = conn.recv(16)
            except OSError:
                data = b""
            if not data:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            for signum in data:
                os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="careloop-command-watch", daemon=True).start()


if __name__ == "__main__":
    main()
