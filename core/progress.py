"""Progress of long work and the figures of each finished step, told to whoever runs it.

The work (a flow, a load, a training) reports; it never prints. The command line installs a
reporter that draws rich progress bars and prints each step's figures as the step ends; in a
worker or a test the default reporter writes the same to the ``careloop.progress`` log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

Advance = Callable[[float], None]
log = logging.getLogger("careloop.progress")
# A run log record the command line prints in its own words (a figure it reports): given as
# ``extra``, it goes to the run's log on the server, and the console's handler drops it.
SAID_BY_THE_COMMAND = {"said_by_the_command": True}


class Reporter(Protocol):
    def step(self, name: str, figures: Mapping[str, Any]) -> None: ...

    def track(self, label: str, total: float | None) -> AbstractContextManager[Advance]: ...

    def note(self, message: str) -> None: ...


class LogReporter:
    """The default: step figures at INFO, progress at DEBUG."""

    def step(self, name: str, figures: Mapping[str, Any]) -> None:
        log.info("%s: %s", name, describe(figures))

    @contextmanager
    def track(self, label: str, total: float | None) -> Iterator[Advance]:
        log.debug("%s: started (%s)", label, "?" if total is None else f"{total:g}")
        yield lambda amount: None
        log.debug("%s: done", label)

    def note(self, message: str) -> None:
        log.warning("%s", message)


_reporter: Reporter = LogReporter()


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Report to ``reporter`` within the block (the command line's rich display)."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


class _StepsMuted:
    def __init__(self, outer: Reporter) -> None:
        self.outer = outer

    def step(self, name: str, figures: Mapping[str, Any]) -> None:
        pass

    def track(self, label: str, total: float | None) -> AbstractContextManager[Advance]:
        return self.outer.track(label, total)

    def note(self, message: str) -> None:
        self.outer.note(message)


@contextmanager
def steps_muted() -> Iterator[None]:
    """Within the block steps are not told, progress still is: work made of many small
    flows (the demo's days) tells its own summary instead."""
    with reporting(_StepsMuted(_reporter)):
        yield


class _StepsHeld(_StepsMuted):
    def __init__(self, outer: Reporter) -> None:
        super().__init__(outer)
        self.held: list[tuple[str, Mapping[str, Any]]] = []

    def step(self, name: str, figures: Mapping[str, Any]) -> None:
        self.held.append((name, figures))


@contextmanager
def steps_held() -> Iterator[None]:
    """Steps ended within the block are told when it ends without an error, and never if it
    fails: work stored in one transaction is not shown as done before it is kept."""
    held = _StepsHeld(_reporter)
    with reporting(held):
        yield
    for name, figures in held.held:
        _reporter.step(name, figures)


def step_done(name: str, figures: Mapping[str, Any]) -> None:
    _reporter.step(name, figures)


def note(message: str) -> None:
    """Something the person running the work should know now (what it is waiting for)."""
    _reporter.note(message)


@contextmanager
def tracked(label: str, total: float | None = None) -> Iterator[Advance]:
    """A piece of long work: yields ``advance(amount)``; ``total`` None when unknown."""
    with _reporter.track(label, total) as advance:
        yield advance


def describe(figures: Mapping[str, Any]) -> str:
    """``{"queued": {"sms": 3}, "held_out": 1, "failed": 0}`` -> ``queued (sms 3), held out 1``:
    zeros (a mapping of zeros too) are left out of longer lists, where they are most of what
    there is."""
    shown = {k: v for k, v in figures.items() if len(figures) <= 3 or _nonzero(v)}
    if not shown:
        return "nothing to do"
    return ", ".join(f"{key.replace('_', ' ')} {_value(value)}" for key, value in shown.items())


def _nonzero(value: object) -> bool:
    if isinstance(value, Mapping):  # {"learned": 0, "fallback": 0} is nothing
        return any(_nonzero(v) for v in value.values())
    return bool(value) if isinstance(value, int | float) else value is not None


def _value(value: object) -> str:
    if isinstance(value, Mapping):
        return f"({describe(value)})" if value else "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
