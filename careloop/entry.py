"""The `careloop` command's entry point: a flow command goes to the warm runner of the stack
`make up` started for this home when it can (careloop.runner), which spares this process the
seconds of importing Prefect and the flows; every other command, and every command the runner
cannot take, runs here (careloop.cli)."""

from __future__ import annotations

import os
import sys

STREAMS = ("stdin", "stdout", "stderr")  # by their numbers, 0 to 2


def main() -> None:  # pragma: no cover - the console entry point, run as a process in tests
    open_closed_streams()
    from careloop.runner import delegate

    code = delegate(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from careloop.cli import run_cli

    run_cli()


def open_closed_streams() -> None:
    """A standard stream the command was started without (``>&-`` in a cron line) reads from
    or writes to /dev/null. Python gives no stream for it, so the first table written failed
    ('NoneType' object has no attribute 'write') after the work was done; and its number stays
    free, so the next file opened (the warehouse, a report) would take it, and whatever a
    library wrote to standard output would land in that file."""
    for number, name in enumerate(STREAMS):
        try:
            os.fstat(number)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != number:
                os.dup2(null, number)
                os.close(null)
            mode = "r" if number == 0 else "w"
            setattr(sys, name, open(number, mode, encoding="utf-8", closefd=False))  # noqa: SIM115
