"""Second round: the dissatisfied get care again, and their store manager gets the case."""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from campaigns.catalog import LoadedCampaign
from campaigns.planning import Plan, record_run, run_steps
from cases.machine import INITIAL
from core.progress import step_done, steps_held
from core.settings import Settings
from warehouse.db import transaction


def plan_second_round(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    campaign: LoadedCampaign,
    as_of: date,
    run_id: str,
    created_at: datetime | None = None,
    flow_run_id: str | None = None,
    segment: str | None = None,
) -> Plan:
    """The campaign's second round as of ``as_of``, with its cases; ``segment``: the day's
    dissatisfied, materialized already for every campaign (``second_round_segment``)."""
    plan = Plan(con, settings, campaign, as_of, round=2, run_id=run_id, segment=segment)
    if created_at:
        plan.created_at = created_at
    # The care and its case are stored together: stopped between the two, the care would
    # stay without a case for good, as a rerun targets no survey that had its second round.
    # Its steps are told once it is kept.
    with steps_held(), transaction(con):
        run_steps(plan)
        plan.figures["cases_opened"] = open_cases(con, plan.created_at)
        step_done(f"{plan.label} cases", {"opened": plan.figures["cases_opened"]})
        record_run(plan, flow_run_id)
    return plan


def open_cases(con: duckdb.DuckDBPyConnection, made_at: datetime) -> int:
    """One case per dissatisfied survey on its store manager's list, with the care it got
    (the plan's, made at ``made_at``, or an earlier one's). A survey that has its case already
    opens none: another reply to it is news for that case (cases.machine's rated_again), not a
    new complaint."""
    rows = con.execute(
        """
        INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id,
            action_id, score, comment, opened_at, second_round_action_id, status, updated_at)
        SELECT t.evaluation_id, coalesce(t.store_id, s.home_store_id), t.subscriber_id,
               t.source_campaign, t.source_action_id, t.score, t.comment, t.occasion_at,
               CASE WHEN a.status NOT IN ('suppressed', 'held_out') THEN a.action_id END,
               $initial, t.occasion_at
        FROM plan_target t
        JOIN subscribers s USING (subscriber_id)
        -- the care for a rating is made after it came, or by this plan (whose clock may be
        -- behind a rating collected meanwhile): the outbox before is skipped (zone maps)
        LEFT JOIN (
            SELECT action_id, status, parent_evaluation_id FROM care_actions
            WHERE created_at >= $since
        ) a ON a.parent_evaluation_id = t.evaluation_id
        WHERE NOT EXISTS (SELECT 1 FROM manager_cases m WHERE m.action_id = t.source_action_id)
        ON CONFLICT DO NOTHING RETURNING 1""",
        {"initial": INITIAL.value, "since": _since(con, made_at)},
    ).fetchall()
    return len(rows)


def _since(con: duckdb.DuckDBPyConnection, made_at: datetime) -> datetime:
    """The earliest a target's care can have been made: its rating's time (the rule's
    ``occasion_at``), or the plan's (a constant, so the outbox's zone maps can skip what was
    written before it). A moment with no timezone is UTC, as the warehouse reads every time."""
    [row] = con.execute(
        "SELECT least(min(occasion_at), CAST($made_at AS TIMESTAMPTZ)) FROM plan_target",
        {"made_at": made_at},
    ).fetchall()
    since: datetime = row[0]
    return since
