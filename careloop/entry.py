"""The `careloop` command's entry point: a flow command goes to the warm runner of the stack
`make up` started for this home when it can (careloop.runner), which spares this process the
seconds of importing Prefect and the flows; every other command, and every command the runner
cannot take, runs here (careloop.cli)."""

from __future__ import annotations

import sys


def main() -> None:  # pragma: no cover - the console entry point, run as a process in tests
    from careloop.runner import delegate

    code = delegate(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from careloop.cli import run_cli

    run_cli()
