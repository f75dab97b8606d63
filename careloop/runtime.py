"""Where the flows a command runs report: the configured Prefect API, the stack that `make up`
started, or else a temporary server.

Turns at the warehouse do not depend on this choice (``warehouse.turn``: a lock on a file
beside it); a command beside `make up` reports to the stack's server so that its flow runs
show in the same UI as the worker's.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Written by `make up` into $CARELOOP_HOME/run, removed by `make down`.
STACK_API_FILE = "prefect-api-url"


@dataclass(frozen=True)
class FlowApi:
    url: str | None  # None: Prefect starts a temporary server for this command
    source: str

    def describe(self) -> str:
        if self.url is None:
            return (
                "flow runs: a temporary Prefect server (set PREFECT_API_URL, or run "
                "`make up`, to keep them)"
            )
        return f"flow runs: {self.url} ({self.source})"


def stack_api(home: Path) -> str | None:
    """The API of the stack `make up` started for this home, if it is up and answering."""
    marker = home / "run" / STACK_API_FILE
    if not marker.exists():
        return None
    url = marker.read_text().strip()
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return url
    except OSError:
        return None  # a stale marker: the stack was killed without `make down`


def choose_api(home: Path) -> FlowApi:
    """PREFECT_API_URL when set; else the running stack's API (exported for Prefect, which
    reads its settings when first imported); else a temporary server."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return FlowApi(configured, "PREFECT_API_URL")
    stack = stack_api(home)
    if stack:
        os.environ["PREFECT_API_URL"] = stack
        return FlowApi(stack, "the stack `make up` started")
    return FlowApi(None, "temporary")


@contextmanager
def in_process_flows() -> Iterator[None]:
    """Flows run in this process without Prefect's heartbeat thread: it sleeps in one-second
    steps and each flow waits for it at its end (about a second per flow, 90 s of a demo),
    and the person who started the command is watching it anyway. Deployed runs keep it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
