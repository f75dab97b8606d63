"""The care loop for one campaign and one as-of date: target, content, channel, standard, send."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import duckdb
from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from campaigns.catalog import Broken, checked_campaign
from campaigns.planning import STEPS, Figures, Plan, Step, record_run, run_steps
from core.clock import business_date, utc_now
from core.progress import SAID_BY_THE_COMMAND
from flows.common import current_flow_run_id, publish, send_due, settings_for, writing_warehouse

# The plans of the runs in progress, by run id. A step's task gets the run id (the UI shows
# it), not the plan: Prefect keeps a task's parameters referenced until the process exits,
# and a plan holds its live warehouse connection.
_RUNNING: dict[str, Plan] = {}


@contextmanager
def _running(plan: Plan) -> Iterator[None]:
    if plan.run_id in _RUNNING:
        raise RuntimeError(f"run {plan.run_id} is in progress already")
    _RUNNING[plan.run_id] = plan
    try:
        yield
    finally:
        _RUNNING.pop(plan.run_id, None)


def _step_task(step: Step) -> Task[[str], Figures]:
    def run(run_id: str) -> Figures:
        return step.run(_RUNNING[run_id])

    # Prefect keys a task by its function's name: each step keeps its own.
    run.__name__ = run.__qualname__ = step.run.__name__
    return task(name=step.name, cache_policy=NO_CACHE)(run)


# Each step of the loop is a Prefect task on the whole batch, named by the step.
STEP_TASKS = {step.name: _step_task(step) for step in STEPS}


def _as_task(step: Step, plan: Plan) -> Figures:
    return STEP_TASKS[step.name](plan.run_id)


def past_occasion_notice(
    con: duckdb.DuckDBPyConnection, run_id: str, as_of: date, now: datetime
) -> str | None:
    """Say plainly when a run plans contacts that have expired already (a past as-of date):
    they are kept in the archive and dispatch never sends them."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE expires_at <= ?), count(*) FROM care_actions "
        "WHERE run_id = ? AND status = 'queued'",
        [now, run_id],
    ).fetchone()
    stale, queued = (int(row[0]), int(row[1])) if row else (0, 0)
    if not stale:
        return None
    return (
        f"as of {as_of} is in the past: {stale} of {queued} planned contact(s) had expired "
        f"by {now:%Y-%m-%d %H:%M} UTC; they are archived as expired and will not be sent"
    )


def empty_warehouse_notice(con: duckdb.DuckDBPyConnection) -> str | None:
    """Say why a run found nobody when the warehouse holds no one at all (a new home: the
    demo's data is in its own)."""
    [(subscribers,)] = con.execute("SELECT count(*) FROM subscribers").fetchall()
    if subscribers:
        return None
    return (
        "the warehouse holds no subscribers: load them (`careloop load subscribers FILE`), "
        "or work on the demo's (`export CARELOOP_HOME=.careloop/demo`)"
    )


@flow(name="care-loop", log_prints=False)
def care_loop(
    campaign: str,
    as_of: date | None = None,
    params: dict[str, Any] | None = None,
    send: bool = True,
    home: str | None = None,
    now: datetime | None = None,
    simulated: bool = False,
) -> dict[str, Any]:
    """Plan one campaign for ``as_of`` into the outbox, then (if ``send``) send what is due."""
    settings = settings_for(home)
    as_of = as_of or business_date(settings.zone, now)
    broken = Broken()
    loaded = checked_campaign(settings, campaign, params, broken)
    for error in broken.errors():  # another campaign's or rule's file: not this run's concern
        get_run_logger().warning("not loaded (its campaigns do not run): %s", error)
    run_id = f"{campaign}-{as_of.isoformat()}-r1-{uuid.uuid4().hex[:8]}"
    with writing_warehouse(settings) as con:
        plan = Plan(
            con,
            settings,
            loaded,
            as_of,
            round=1,
            run_id=run_id,
            params=params or {},
            created_at=now or utc_now(),
        )
        with _running(plan):
            run_steps(plan, _as_task)
        record_run(plan, current_flow_run_id())
        figures = dict(plan.figures)
        notice = past_occasion_notice(con, run_id, as_of, now or utc_now()) or (
            empty_warehouse_notice(con) if not figures.get("targeted") else None
        )
        if notice:
            figures["notice"] = notice
            get_run_logger().warning(notice, extra=SAID_BY_THE_COMMAND)  # its notice line
    if send:
        figures["dispatch"] = send_due(settings, now, simulated)
    get_run_logger().info("care loop %s for %s: %s", campaign, as_of, figures)
    publish(f"care-loop-{campaign}", f"Care loop {campaign} as of {as_of}", figures)
    return figures
