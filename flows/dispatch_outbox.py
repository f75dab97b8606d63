"""Send whatever in the outbox is due: actions that waited for their customer's send window."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import flow

from campaigns.channels.factory import get_provider
from campaigns.dispatch import dispatch
from flows.common import publish, settings_for
from warehouse.db import warehouse


@flow(name="dispatch-outbox")
def dispatch_outbox(
    home: str | None = None, now: datetime | None = None, simulated: bool = False
) -> dict[str, Any]:
    settings = settings_for(home)
    with warehouse(settings.warehouse_path) as con:
        figures = asdict(
            dispatch(
                con,
                get_provider(settings),
                now=now or datetime.now(UTC),
                simulated=simulated,
                batch_size=settings.dispatch_batch_size,
            )
        )
    publish("dispatch-outbox", "Outbox dispatch", figures)
    return figures
