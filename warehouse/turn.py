"""Turns at the warehouse: one process at a time opens the DuckDB file.

DuckDB lets one process open a file, readers included, and refuses any other at once ("Could
not set lock on file"). So every process that opens the warehouse (a flow, a command beside the
stack, a report, a load) first takes its turn: an exclusive ``flock`` on ``<warehouse>.turn``
beside the file. The kernel gives the lock back when its holder exits, however it exits
(SIGKILL, out of memory, a redeploy), so a crash never stalls the next one; the lock is the
file's own, so two warehouses never wait for each other; and nothing depends on a Prefect
server being up. Within one process the turn is shared (DuckDB keeps one database instance per
process). The holder writes who it is into the file, so that a waiter can say whom it waits for.

Sending has a turn of its own (``<warehouse>.sending``): a dispatch holds it for its whole run,
and lets the warehouse go while it waits on the network. So only a dead run can have left
actions ``sending``, which is what lets the next run settle them with the provider. The
sending turn is always taken first, never while holding the warehouse, so no two processes can
each hold what the other waits for.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from core.files import private_parents
from core.progress import note

_held: dict[Path, tuple[int, int]] = {}  # turn file -> (its descriptor, how many hold it here)
_guard = threading.Lock()


WAREHOUSE = "turn"
SENDING = "sending"
_WAITING = {WAREHOUSE: "waiting for the warehouse", SENDING: "waiting to send"}


def turn_file(warehouse_path: Path, kind: str = WAREHOUSE) -> Path:
    return warehouse_path.with_name(f"{warehouse_path.name}.{kind}")


@contextmanager
def turn(warehouse_path: Path, holder: str | None = None, kind: str = WAREHOUSE) -> Iterator[None]:
    """Hold the warehouse's turn (or its sending turn) within the block, waiting (and saying
    so) while another process has it."""
    path = turn_file(warehouse_path, kind).resolve()
    if kind == SENDING:
        # Taken before the warehouse, never inside it (or two processes could each hold what
        # the other waits for); and once per process: a second sender here would settle the
        # first one's sends in flight as if their run had died.
        if holds(warehouse_path):
            raise RuntimeError("the sending turn is taken before the warehouse, never inside it")
        with _guard:
            if path in _held:
                raise RuntimeError("one sender at a time in a process")
    _take(path, holder or this_process(), _WAITING[kind])
    try:
        yield
    finally:
        _give_back(path)


def holds(warehouse_path: Path) -> int:
    """How many holds of the warehouse's turn this process has open (0: none)."""
    with _guard:
        return _held.get(turn_file(warehouse_path).resolve(), (0, 0))[1]


def this_process() -> str:
    """``careloop report (pid 4242)``: the command and its first word that is not an option."""
    words = [w for w in sys.argv[1:] if not w.startswith("-")][:1]
    command = " ".join([Path(sys.argv[0]).name, *words]) if sys.argv else "python"
    return f"{command} (pid {os.getpid()})"


def current_holder(warehouse_path: Path, kind: str = WAREHOUSE) -> str | None:
    """Who holds the turn now, as its holder wrote it; None when nobody does."""
    path = turn_file(warehouse_path, kind)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _take(path: Path, holder: str, waiting: str) -> None:
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            return
    # Waiting happens outside the guard, so other threads can still give their turns back.
    private_parents(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(fd, path, waiting)
        _write(fd, f"{holder} since {datetime.now(UTC):%H:%M:%S} UTC")
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[path] = (fd, 1)


def _lock(fd: int, path: Path, waiting: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        note(f"{waiting}: held by {_read(path) or 'another process'}")
        fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel wakes us when the holder lets go or dies


def _give_back(path: Path) -> None:
    with _guard:
        fd, depth = _held[path]
        if depth > 1:
            _held[path] = (fd, depth - 1)
            return
        del _held[path]
        os.close(fd)  # closing the descriptor releases the lock


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""
