"""Send whatever in the outbox is due: actions that waited for their customer's send window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.common import publish, send_due, settings_for


@flow(name="dispatch-outbox")
def dispatch_outbox(
    home: str | None = None, now: datetime | None = None, simulated: bool = False
) -> dict[str, Any]:
    settings = settings_for(home)
    figures = send_due(settings, now, simulated)
    publish("dispatch-outbox", "Outbox dispatch", figures)
    return figures
