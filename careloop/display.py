"""What the command line shows while work runs: rich progress bars and each step's figures."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from core.output import console as output_console
from core.progress import SAID_BY_THE_COMMAND, Advance, describe


class RichReporter:
    """Progress bars that vanish when their work ends, and one line per finished step."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.errors = output_console(stderr=True)  # notes never mix into output a pipe reads
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )

    def step(self, name: str, figures: Mapping[str, Any]) -> None:
        self.console.print(f"[green]✓[/green] [bold]{name}[/bold]: {describe(figures)}")

    def note(self, message: str) -> None:
        self.errors.print(f"[yellow]…[/yellow] {message}", highlight=False)

    @contextmanager
    def track(self, label: str, total: float | None) -> Iterator[Advance]:
        task = self.progress.add_task(label, total=total)
        try:
            yield lambda amount: self.progress.advance(task, amount)
        finally:
            self.progress.remove_task(task)

    @contextmanager
    def live(self) -> Iterator[RichReporter]:
        """Bars are drawn on a terminal only; in a log or a pipe the step lines suffice."""
        if not self.console.is_terminal:
            yield self
            return
        with self.progress:
            yield self


class FailureNoiseFilter(logging.Filter):
    """Prefect logs a failing run's exception with its traceback; the command prints the
    error itself, in one line, so on the console these records are dropped (the API log
    handler still sends them to the server), as are the exit's "still processing items" and
    what the command says itself (``core.progress.SAID_BY_THE_COMMAND``).
    ``--debug`` leaves them in."""

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.levelno >= logging.ERROR and record.name.startswith("prefect")
        # At exit Prefect sends the events still queued, and says so as a warning: the events
        # go all the same, and the person at the console has nothing to do about it.
        draining = record.name == "EventsWorker" and record.getMessage().startswith(
            "Still processing items"
        )
        said = all(getattr(record, k, None) == v for k, v in SAID_BY_THE_COMMAND.items())
        return not (failure or draining or said)


def quiet_prefect_failures() -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):  # "": the root
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not any(
                isinstance(f, FailureNoiseFilter) for f in handler.filters
            ):
                handler.addFilter(FailureNoiseFilter())
