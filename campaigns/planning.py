"""Steps 1-4 of the loop for one campaign round: target, content, channel, standard.

Each step works on the whole batch in DuckDB temp tables; only template rendering runs in
Python, over the segment (thousands of rows), never over the population. The result lands in
``care_actions`` (the outbox and contact archive) keyed by an idempotency key, so a rerun of the
same campaign for the same date plans nobody twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb

from campaigns.catalog import SECOND_ROUND_SEGMENT, LoadedCampaign
from campaigns.content import StepRenderer, render_members, with_offers
from campaigns.send_time import plan_send_times
from campaigns.spec import DEFAULT_VALID_FOR, CareStep, validity_seconds
from campaigns.variants import assign_variants
from core.clock import utc_now
from core.progress import step_done
from core.settings import Settings
from segments.registry import SegmentRule, materialize
from warehouse.db import query_typed_frame, register_frame

# Outbox statuses that mean "this customer was (or is about to be) contacted".
CONTACT_STATUSES = ("queued", "sending", "sent", "delivered", "unconfirmed")
# Why an unreachable member was not contacted, most decisive first.
REACHABILITY_ORDER = ("opted_out", "no_consent", "no_contact")
# Segment columns with a meaning to the planner; the rest are template variables.
SPECIAL_COLUMNS = ("subscriber_id", "occasion", "store_id", "due_at", "occasion_at")
PROFILE_COLUMNS = (
    "name",
    "tier",
    "locale",
    "timezone",
    "phone",
    "email",
    "sms_consent",
    "email_consent",
    "voice_consent",
    "joined_on",  # when the customer's consent began: a number's older opt-out was another's
)


@dataclass
class Plan:
    """One planning run: what is planned, for whom, and the figures of each step.

    ``params`` override the campaign's segment parameters (first round only); a ``dry_run``
    keeps the outcome in ``plan_final`` instead of writing the outbox (audience preview).
    """

    con: duckdb.DuckDBPyConnection
    settings: Settings
    campaign: LoadedCampaign
    as_of: date
    round: int
    run_id: str
    params: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    # A table holding the rule's members already (second_round_segment), else materialized.
    segment: str | None = None
    # The project's clock (``core.clock``), looked up when a plan is made: the moment a
    # shifted or injected clock says, like every other time the loop writes.
    created_at: datetime = field(default_factory=lambda: utc_now())
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> CareStep:
        return (
            self.campaign.campaign.care if self.round == 1 else self.campaign.campaign.second_round
        )

    @property
    def valid_for(self) -> str:
        return self.step.valid_for or DEFAULT_VALID_FOR[self.round]

    @property
    def renderer(self) -> StepRenderer:
        return self.campaign.care if self.round == 1 else self.campaign.second_round

    @property
    def label(self) -> str:
        """How the run's steps are named in progress: ``birthday``, ``birthday round 2``."""
        return self.campaign.name if self.round == 1 else f"{self.campaign.name} round 2"

    @property
    def rule(self) -> SegmentRule:
        return self.campaign.rule if self.round == 1 else self.campaign.second_round_rule

    @property
    def rule_params(self) -> dict[str, Any]:
        if self.round != 1:
            return {}
        return {**self.campaign.campaign.params, **self.params}


Figures = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One step of the loop: a name (as flows and figures show it) and its work on a plan."""

    name: str
    run: Callable[[Plan], Figures]


def run_steps(plan: Plan, runner: Callable[[Step, Plan], Figures] | None = None) -> Figures:
    """Steps 1-4 in order, each one's figures merged into the plan's and reported as it
    ends. ``runner`` runs one step (a flow wraps each in a Prefect task); default: directly."""
    for step in STEPS:
        figures = runner(step, plan) if runner else step.run(plan)
        plan.figures.update(figures)
        step_done(f"{plan.label} {step.name}", figures)
    return plan.figures


def target(plan: Plan) -> Figures:
    """Step 1: the segment's members into ``plan_target``; a second round's, those whose
    rated care was the campaign's."""
    if plan.rule.name != SECOND_ROUND_SEGMENT:
        size = materialize(plan.con, plan.rule, plan.as_of, "plan_target", plan.rule_params)
        return {"targeted": size}
    # the day's dissatisfied, read once for every campaign (or here, for this plan alone)
    segment = plan.segment or second_round_segment(
        plan.con, plan.rule, plan.as_of, "plan_second_round_segment"
    )
    plan.con.execute(
        f"CREATE OR REPLACE TEMP TABLE plan_target AS SELECT * FROM {segment} "
        "WHERE source_campaign = ?",
        [plan.campaign.name],
    )
    return {"targeted": _count(plan.con, "plan_target")}


def second_round_segment(
    con: duckdb.DuckDBPyConnection, rule: SegmentRule, as_of: date, table: str
) -> str:
    """The dissatisfied of ``as_of`` into ``table``, once for every campaign's second round of
    the day (``Plan.segment``): the rule takes no campaign's parameters, and what one
    campaign's plan writes (its surveys' second rounds and cases) leaves the other
    campaigns' members as they were. The caller holds the warehouse from here to the last
    plan, so nothing else changes them meanwhile."""
    if rule.name != SECOND_ROUND_SEGMENT:
        raise ValueError(f"{rule.name}: only the second round's segment is shared by campaigns")
    materialize(con, rule, as_of, table)
    return table


def content(plan: Plan) -> Figures:
    """Step 2: join the profile, drop members already planned, pick each member's offer. The
    message itself is rendered when the outbox is written, on the chosen channel only."""
    members = _join_profiles(plan)
    remaining = _drop_already_planned(plan)
    # through Arrow: a rule's DATE stays a date and its integers integers (through pandas a
    # template showed "2025-06-11 00:00:00", and an age beside a NULL "21.0")
    members_frame = query_typed_frame(plan.con, "SELECT * FROM plan_members")
    offers = with_offers(plan.step, members_frame)
    register_frame(plan.con, "offered_members", offers)
    plan.con.execute("CREATE OR REPLACE TEMP TABLE plan_content AS SELECT * FROM offered_members")
    plan.con.unregister("offered_members")
    return {
        # left the operator by the as-of date, or no longer in subscribers ("unknown
        # subscribers" once, though mostly they had left)
        "left_or_unknown": plan.figures.get("targeted", members) - members,
        "already_planned": members - remaining,
    }


def _join_profiles(plan: Plan) -> int:
    """``plan_members``: each member with profile, store and idempotency key; how many."""
    columns = _columns(plan.con, "plan_target")
    extras = [
        c
        for c in columns
        if c not in SPECIAL_COLUMNS and c not in PROFILE_COLUMNS and c != "store_name"
    ]
    occasion = "t.occasion" if "occasion" in columns else "strftime(?::DATE, '%Y-%m-%d')"
    store = "coalesce(t.store_id, s.home_store_id)" if "store_id" in columns else "s.home_store_id"
    due = "t.due_at" if "due_at" in columns else "NULL::TIMESTAMPTZ"
    happened = "t.occasion_at" if "occasion_at" in columns else "NULL::TIMESTAMPTZ"
    params: list[Any] = [] if "occasion" in columns else [plan.as_of]
    plan.con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE plan_members AS
        SELECT *, {ACTION_ID} AS action_id FROM (
            SELECT t.subscriber_id, {occasion} AS occasion, {store} AS store_id,
                   {due} AS due_at, {happened} AS occasion_at,
                   st.name AS store_name, st.city AS store_city,
                   {", ".join(f"s.{c}" for c in PROFILE_COLUMNS)}
                   {"".join(f", t.{c}" for c in extras)},
                   ? || '|' || t.subscriber_id || '|' || {occasion} || '|' || ? AS idempotency_key
            FROM plan_target t
            JOIN subscribers s USING (subscriber_id)
            LEFT JOIN stores st ON st.store_id = {store}
            WHERE s.left_on IS NULL OR s.left_on > ?::DATE
        )""",
        [plan.as_of, *params, plan.campaign.name, *params, plan.round, plan.as_of],
    )
    return _count(plan.con, "plan_members")


# An action id begins with the day it was planned for, then the idempotency key's hash (the
# same length as before: it travels in every link). DuckDB keeps the outbox's key in an index
# it loads from disk as keys touch it and writes out at each checkpoint: a day's ids side by
# side touch a few of its branches, where hashes alone touched most of the history's.
def action_id_sql(day: str, key: str) -> str:
    """An action id in SQL, from ``day`` (a DATE expression) and ``key`` (the idempotency
    key's): the plans' and the benchmark history's."""
    return f"'ca_' || strftime({day}, '%Y%m%d') || substr(md5({key}), 1, 16)"


ACTION_ID = action_id_sql("?::DATE", "idempotency_key")


def action_id(day: date, idempotency_key: str) -> str:
    """``ACTION_ID``, for an action made outside a plan's SQL (a case's follow-up)."""
    return f"ca_{day:%Y%m%d}" + hashlib.md5(idempotency_key.encode()).hexdigest()[:16]


def key_round(idempotency_key: str) -> int:
    """The round an idempotency key (``campaign|subscriber|occasion|round``) was made for."""
    return int(idempotency_key.rsplit("|", 1)[1])


def _drop_already_planned(plan: Plan) -> int:
    """Members whose occasion is in the outbox already go to ``plan_already``; how many stay."""
    plan.con.execute(
        "CREATE OR REPLACE TEMP TABLE plan_already AS SELECT subscriber_id, occasion, "
        "idempotency_key FROM plan_members WHERE idempotency_key IN ("
        f"SELECT idempotency_key FROM care_actions WHERE {_outbox_rows_to_compare(plan)})",
        {"campaign": plan.campaign.name},
    )
    plan.con.execute(
        "DELETE FROM plan_members WHERE idempotency_key IN "
        "(SELECT idempotency_key FROM plan_already)"
    )
    return _count(plan.con, "plan_members")


def _outbox_rows_to_compare(plan: Plan) -> str:
    """The outbox rows that can hold a member's key: a filter on compressed columns, so the
    key hash holds the few that pass, not every key ever planned (1.1-1.7 s a plan at a year).
    No time bounds it, not even a second round's: care made by a plan whose clock was behind
    the rating holds its key too."""
    # A key is campaign|subscriber|occasion|round, the campaign and the subscriber plain ids
    # (no '|'): an equal key has the same campaign, occasion and round (every writer sets the
    # columns from the key's parts). A round's rows come in blocks, a plan's, so the round
    # lets DuckDB skip reading the other columns for most of the history's vectors: for a
    # second round at a year, 0.38 against 0.21 s warm. A text occasion is stored as the key
    # has it; a rule's date or number is not (a date comes back as a timestamp's text), so
    # its members are compared among the campaign's rows of the round.
    [(kind,)] = plan.con.execute(
        "SELECT data_type FROM duckdb_columns() "
        "WHERE database_name = 'temp' AND table_name = 'plan_members' AND column_name = 'occasion'"
    ).fetchall()
    rows = f"round = {plan.round:d} AND campaign_id = $campaign"
    if kind == "VARCHAR":
        return rows + " AND occasion IN (SELECT occasion FROM plan_members)"
    return rows


def choose_channel(plan: Plan) -> Figures:
    """Step 3: the first channel in the campaign's order with contact data, consent, no opt-out."""
    preferred = plan.step.channels
    chosen = " ".join(f"WHEN {ch}_state = 'ok' THEN '{ch}'" for ch in preferred)
    states = ", ".join(f"{ch}_state" for ch in preferred)
    reason = " ".join(
        f"WHEN list_contains([{states}], '{r}') THEN '{r}'" for r in REACHABILITY_ORDER
    )
    plan.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE plan_channel AS
        WITH opted AS (
            SELECT subscriber_id, list(channel) AS channels FROM active_opt_outs GROUP BY ALL
        ), states AS (
            SELECT c.*,
                {_state_sql("sms", "phone")} AS sms_state,
                {_state_sql("email", "email")} AS email_state,
                {_state_sql("voice", "phone")} AS voice_state
            FROM plan_content c LEFT JOIN opted o USING (subscriber_id)
            -- the number's own opt-out, whoever's record it was made on (migration 0032),
            -- since this customer joined: before, the number was someone else's (recycled)
            LEFT JOIN active_phone_opt_outs p
              ON p.phone = c.phone AND p.occurred_at >= c.joined_on
        )
        SELECT *,
            CASE {chosen} END AS channel,
            CASE WHEN ({" OR ".join(f"{ch}_state = 'ok'" for ch in preferred)}) THEN NULL
                 {reason} END AS unreachable_reason
        FROM states""")
    counts = dict(
        plan.con.execute(
            "SELECT coalesce(channel, 'unreachable'), count(*) FROM plan_channel GROUP BY ALL"
        ).fetchall()
    )
    return {"reachable_by_channel": {k: v for k, v in counts.items() if k != "unreachable"}}


def _state_sql(channel: str, contact: str) -> str:
    number = " OR p.phone IS NOT NULL" if contact == "phone" else ""
    return (
        f"CASE WHEN c.{contact} IS NULL THEN 'no_contact' "
        f"WHEN list_contains(coalesce(o.channels, []), '{channel}'){number} THEN 'opted_out' "
        f"WHEN NOT c.{channel}_consent THEN 'no_consent' ELSE 'ok' END"
    )


def apply_standard(plan: Plan) -> Figures:
    """Step 4: send windows (at a learned hour where the campaign asks, campaigns/send_time.py),
    frequency cap, holdout, message variants (campaigns/variants.py); write the outbox and
    contact archive (a dry run keeps the outcome in ``plan_final``)."""
    learned = _schedule(plan)
    _set_expiry(plan)
    _suppress(plan)
    variants = assign_variants(
        plan.con, plan.campaign.name, plan.step, plan.as_of, plan.created_at,
        reply_window_hours=plan.settings.reply_window_hours, record=not plan.dry_run,
    )  # fmt: skip
    if not plan.dry_run:
        _write_outbox(plan)
    standard = _standard_figures(plan)
    if not _count(plan.con, "plan_final"):  # as every campaign's: nothing queued, nor learned
        return standard
    return {**standard, **learned, **variants}


def _schedule(plan: Plan) -> Figures:
    """``plan_scheduled``: each member's send time in their timezone (the campaign's, or each
    one's learned hour), moved into the window (email has none)."""
    campaign = plan.campaign.campaign
    start, end = campaign.send_window
    figures = plan_send_times(
        plan.con, campaign, "plan_channel", before=plan.created_at,
        held_out=_held_out_sql(plan), params=_held_out_params(plan),
    )  # fmt: skip
    plan.con.execute(
        """
        CREATE OR REPLACE TEMP TABLE plan_scheduled AS
        WITH local_due AS (
            SELECT *, coalesce(timezone(timezone, due_at), ?::DATE + send_time) AS due_local
            FROM plan_channel JOIN plan_send_times USING (action_id)
        ), windowed AS (
            SELECT *, CASE
                WHEN channel = 'email' THEN due_local
                WHEN due_local::TIME < ?::TIME THEN due_local::DATE + ?::TIME
                WHEN due_local::TIME >= ?::TIME THEN (due_local::DATE + 1) + ?::TIME
                ELSE due_local END AS send_local
            FROM local_due
        )
        SELECT *, timezone(timezone, send_local) AS scheduled_at FROM windowed""",
        [plan.as_of, start, start, end, start],
    )
    return figures


def _held_out_sql(plan: Plan) -> str:
    """Whether a member is held out (first rounds only): a hash of customer and campaign, so
    the same customers every time. Its parameters: ``_held_out_params``."""
    return f"{plan.round == 1} AND md5_number(subscriber_id || '|' || $campaign) % 10000 < $holdout"


def _held_out_params(plan: Plan) -> dict[str, Any]:
    return {
        "campaign": plan.campaign.name,
        "holdout": round(plan.campaign.campaign.holdout_percent * 100),
    }


SHARED_NUMBER = "shared_number"  # a second call to the number in the plan, and no email


def _suppress(plan: Plan) -> None:
    """``plan_final``: why each member is not contacted, if not: unreachable, capped across
    campaigns (first rounds only: a complaint's second round passes) or held out; and
    whether the member is asked the survey (``asks``): one member a number is, the others
    by email where they can be, else given their care without it (but a second call)."""
    cap_applies = plan.round == 1
    surveys = plan.step.survey is not None  # a greeting alone may go to each of them
    by_email = f"({'email' in plan.step.channels} AND email_state = 'ok')"
    window = plan.settings.frequency_window_days
    # Contacts within the cap's window of any member's send time, as constants: a range on
    # scheduled_at that DuckDB's zone maps answer without reading a year of sends.
    span = plan.con.execute(
        "SELECT min(scheduled_at) - to_days($w), max(scheduled_at) + to_days($w) "
        "FROM plan_scheduled",
        {"w": window},
    ).fetchone()
    plan.con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE plan_final AS
        WITH nearby AS (
            SELECT action_id, subscriber_id, status, scheduled_at FROM care_actions
            WHERE scheduled_at > $low AND scheduled_at < $high
        ), recent AS (
            SELECT p.action_id, count(a.action_id) AS recent_contacts
            FROM plan_scheduled p
            LEFT JOIN nearby a
              ON a.subscriber_id = p.subscriber_id
             AND a.status IN {CONTACT_STATUSES}
             AND a.scheduled_at > p.scheduled_at - to_days($window)
             AND a.scheduled_at < p.scheduled_at + to_days($window)
            GROUP BY ALL
        ), ranked AS (
            SELECT p.*, r.recent_contacts, row_number() OVER (
                PARTITION BY p.subscriber_id, p.channel IS NULL
                ORDER BY p.scheduled_at, p.action_id) AS nth_in_batch
            FROM plan_scheduled p JOIN recent r USING (action_id)
        ), decided AS (
            SELECT *, CASE
                WHEN channel IS NULL THEN unreachable_reason
                WHEN {cap_applies} AND recent_contacts + nth_in_batch > $cap THEN 'capped'
                WHEN {_held_out_sql(plan)} THEN 'holdout'
                END AS reason
            FROM ranked
        -- One survey a number in a plan: members sharing a phone (a household's) got the
        -- same survey at the same moment, and every answer went to one of them (a reply is
        -- the latest survey's to its number: feedback.ingest). The others are asked by email
        -- where the campaign and they allow it; else they get their care without the survey
        -- (a greeting and its gift are not lost for being a household's), but for a second
        -- call to the number, which would ring at the moment the first one does.
        ), shared AS (
            SELECT *, {surveys} AND asked AND row_number() OVER (
                PARTITION BY CASE WHEN asked THEN phone END
                ORDER BY scheduled_at, subscriber_id) > 1 AS shared
            FROM (SELECT *, reason IS NULL AND channel IN ('sms', 'voice') AS asked FROM decided)
        ), placed AS (  -- another member is asked on the number: by email, or not asked
            SELECT *, shared AND {by_email} AS to_email, shared AND NOT {by_email} AS unasked
            FROM shared
        ), second AS (  -- the calls that stay calls, and any after the first to a number
            SELECT *, {surveys} AND calls AND row_number() OVER (
                PARTITION BY CASE WHEN calls THEN phone END
                ORDER BY scheduled_at, subscriber_id) > 1 AS second_call
            FROM (SELECT *, asked AND channel = 'voice' AND NOT to_email AS calls FROM placed)
        )
        SELECT * EXCLUDE (reason, asked, shared, to_email, unasked, calls, second_call,
                          channel, scheduled_at),
            CASE WHEN to_email THEN 'email' ELSE channel END AS channel,
            -- email has no send window: at its due time, as _schedule times email
            CASE WHEN to_email THEN timezone(timezone, due_local) ELSE scheduled_at END
                AS scheduled_at,
            CASE WHEN unasked AND second_call THEN '{SHARED_NUMBER}' ELSE reason END
                AS suppression_reason,
            {surveys} AND NOT unasked AS asks
        FROM second""",
        {
            "low": span[0] if span else None,
            "high": span[1] if span else None,
            "window": window,
            "cap": plan.settings.frequency_cap,
            **_held_out_params(plan),
        },
    )


def _set_expiry(plan: Plan) -> None:
    """When each contact stops being worth sending (see CareStep.valid_for)."""
    seconds = validity_seconds(plan.valid_for)
    params: list[object]
    if seconds is None:  # the end of the occasion's day, in the customer's own timezone
        expiry, params = "timezone(timezone, (?::DATE + 1)::TIMESTAMP)", [plan.as_of]
    else:
        expiry, params = "coalesce(occasion_at, due_at, scheduled_at) + to_seconds(?)", [seconds]
    plan.con.execute(
        f"ALTER TABLE plan_scheduled ADD COLUMN expires_at TIMESTAMPTZ; "
        f"UPDATE plan_scheduled SET expires_at = {expiry}",
        params,
    )


def _render(plan: Plan) -> None:
    """``plan_messages``: the message of every member who has a channel, on that channel."""
    reachable = query_typed_frame(plan.con, "SELECT * FROM plan_final WHERE channel IS NOT NULL")
    register_frame(plan.con, "rendered", render_members(plan.renderer, reachable, plan.created_at))
    plan.con.execute("CREATE OR REPLACE TEMP TABLE plan_messages AS SELECT * FROM rendered")
    plan.con.unregister("rendered")


# The outbox's one unique key (migration 0028), for a one-off load (the demo's history).
# The daily writers (plans, follow-ups) insert without it: their members planned already
# were dropped by idempotency key (``_drop_already_planned``), and an action id is the day
# and that key's hash, so the unique key alone refuses what would repeat. DuckDB runs ON
# CONFLICT DO NOTHING as a merge: at a year of history 2.1 to 8.4 s for 100 to 6,343 new
# rows (for a day's tenure plan, a hash join over all 50.7 million action ids), 0.03 s
# without it.
OUTBOX_CONFLICT = "ON CONFLICT (action_id) DO NOTHING"


def _write_outbox(plan: Plan) -> None:
    parent = "evaluation_id" if plan.round == 2 else "NULL"
    _render(plan)
    plan.con.execute(
        f"""
        INSERT INTO care_actions (
            action_id, idempotency_key, run_id, campaign_id, subscriber_id, occasion, round,
            parent_evaluation_id, store_id, tier, locale, channel, recipient, offer_code,
            subject, body, survey, status, suppression_reason, scheduled_at, created_at,
            updated_at, timezone, window_start, window_end, segments, expires_at, variant,
            send_time_source)
        SELECT action_id, idempotency_key, ?, ?, subscriber_id, occasion, ?,
            {parent}, store_id, tier, locale, channel,
            CASE WHEN channel = 'email' THEN email WHEN channel IS NOT NULL THEN phone END,
            offer_code, m.subject, m.body, asks,
            CASE WHEN suppression_reason IS NULL THEN 'queued'
                 WHEN suppression_reason = 'holdout' THEN 'held_out'
                 ELSE 'suppressed' END,
            suppression_reason, scheduled_at, ?, ?, timezone,
            CASE WHEN channel IN ('sms', 'voice') THEN ?::TIME END,
            CASE WHEN channel IN ('sms', 'voice') THEN ?::TIME END,
            m.segments, expires_at, variant, send_time_source
        FROM plan_final LEFT JOIN plan_messages m USING (action_id)""",
        [
            plan.run_id,
            plan.campaign.name,
            plan.round,
            plan.created_at,
            plan.created_at,
            *plan.campaign.campaign.send_window,
        ],
    )


def _standard_figures(plan: Plan) -> Figures:
    rows = plan.con.execute(
        "SELECT coalesce(suppression_reason, 'queued'), channel, count(*) FROM plan_final "
        "GROUP BY ALL"
    ).fetchall()
    suppressed: dict[str, int] = {}
    queued: dict[str, int] = {}
    for reason, channel, n in rows:
        if reason == "queued":
            queued[channel] = queued.get(channel, 0) + n
        elif reason != "holdout":
            suppressed[reason] = suppressed.get(reason, 0) + n
    return {
        "queued": queued,
        "suppressed": suppressed,
        "held_out": sum(n for reason, _, n in rows if reason == "holdout"),
    }


# The loop's steps 1-4, in order: the one place they are listed.
STEPS = (
    Step("1-target", target),
    Step("2-content", content),
    Step("3-channel", choose_channel),
    Step("4-standard", apply_standard),
)

REGISTER_CAMPAIGN_SQL = """
INSERT INTO campaigns (campaign_id, segment, definition, checksum) VALUES (?, ?, ?, md5(?))
ON CONFLICT (campaign_id) DO UPDATE SET
    segment = excluded.segment, definition = excluded.definition, checksum = excluded.checksum
"""


def record_run(plan: Plan, flow_run_id: str | None = None) -> None:
    campaign = plan.campaign.campaign
    definition = campaign.model_dump_json()
    plan.con.execute(
        REGISTER_CAMPAIGN_SQL, [campaign.name, campaign.segment, definition, definition]
    )
    plan.con.execute(
        "INSERT INTO campaign_runs VALUES (?, ?, ?, ?, ?, ?, now(), ?)",
        [
            plan.run_id,
            campaign.name,
            plan.as_of,
            plan.round,
            flow_run_id,
            plan.created_at,
            json.dumps(plan.figures),
        ],
    )


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [str(r[0]) for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0
