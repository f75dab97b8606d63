"""Audience preview: who a campaign would contact on a date, and why each other member not.

A dry run of steps 1-4 that writes nothing: the segment shows the rule itself, the audience
shows the result of the Standard step.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import polars as pl

from campaigns.catalog import LoadedCampaign
from campaigns.planning import Plan, run_steps
from core.settings import Settings
from warehouse.db import query_typed_frame

AUDIENCE_SQL = """
SELECT subscriber_id, occasion,
    CASE WHEN suppression_reason IS NULL THEN 'contact'
         WHEN suppression_reason = 'holdout' THEN 'held_out'
         ELSE 'not_contacted' END AS decision,
    suppression_reason AS reason,
    channel,
    strftime(send_local, '%Y-%m-%d %H:%M') AS local_send_time,
    timezone,
    CASE WHEN channel IS NOT NULL AND send_local <> due_local
         THEN 'quiet hours: waits for the send window' END AS note
FROM plan_final
UNION ALL
SELECT subscriber_id, occasion, 'not_contacted', 'already_planned', NULL, NULL, NULL,
       'this occasion is already in the outbox'
FROM plan_already
ORDER BY decision, reason NULLS FIRST, subscriber_id
"""


def preview_audience(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    campaign: LoadedCampaign,
    as_of: date,
    params: dict[str, Any] | None = None,
) -> pl.DataFrame:
    plan = Plan(
        con, settings, campaign, as_of, round=1, run_id="preview", params=params or {}, dry_run=True
    )
    run_steps(plan)
    return query_typed_frame(con, AUDIENCE_SQL)  # a DATE stays a date, as in the warehouse
