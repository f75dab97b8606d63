"""Second round: care again for every dissatisfied customer, and a case for their store."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from campaigns.catalog import Broken, load_campaigns
from campaigns.planning import second_round_segment
from campaigns.spec import CampaignError
from cases.board import Board
from cases.publishing import publish_boards
from cases.second_round import plan_second_round
from core.clock import business_date, utc_now
from core.progress import step_done
from core.settings import Settings
from feedback.ingest import watermark
from flows.common import current_flow_run_id, publish, send_due, settings_for, writing_warehouse
from inbox.inbox import Inbox

NOT_RUN = "not run"  # the campaigns that could not load, with their errors


@task(name="plan-second-round", cache_policy=NO_CACHE)
def plan_all(settings: Settings, as_of: date, now: datetime | None) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    flow_run_id = current_flow_run_id()
    with writing_warehouse(settings) as con:
        # One moment for the plans and their cases' boards, taken once the warehouse is ours:
        # every rating collected before the turn came is older than the care made for it.
        at = now or utc_now()
        broken = Broken()  # a campaign that cannot load has no second round: the others do
        campaigns = load_campaigns(settings, broken=broken)
        if broken.campaigns:
            figures[NOT_RUN] = broken.campaigns
        # one reading of the day's dissatisfied for every campaign (0.2 s each at a year):
        # every campaign's second round has the one rule (campaigns.catalog)
        segment = next(
            (second_round_segment(con, c.second_round_rule, as_of, "second_round_members")
             for c in campaigns.values()),
            None,
        )  # fmt: skip
        for name, campaign in campaigns.items():
            run_id = f"{name}-{as_of.isoformat()}-r2-{uuid.uuid4().hex[:8]}"
            plan = plan_second_round(
                con, settings, campaign, as_of, run_id, created_at=at, flow_run_id=flow_run_id,
                segment=segment,
            )  # fmt: skip
            figures[name] = plan.figures
        # the cases just opened reach their managers' boards now, not at the next collect
        board = Board(Inbox.of(settings))
        published = publish_boards(
            con, board, at, settings.case_sla_hours, watermark(con, board.inbox)
        )
    step_done("boards", {"cases published": published})
    return figures


@flow(name="second-round")
def second_round(
    as_of: date | None = None,
    send: bool = True,
    home: str | None = None,
    now: datetime | None = None,
    simulated: bool = False,
) -> dict[str, Any]:
    settings = settings_for(home)
    as_of = as_of or business_date(settings.zone, now)
    figures = plan_all(settings, as_of, now)
    if send:
        figures["dispatch"] = send_due(settings, now, simulated)
    publish("second-round", f"Second round as of {as_of}", figures)
    if NOT_RUN in figures:  # the run fails, once the others' second rounds are done
        raise CampaignError(
            "no second round for: "
            + "; ".join(f"{name} ({error})" for name, error in figures[NOT_RUN].items())
        )
    return figures
