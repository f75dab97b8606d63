"""Asking again once a store manager resolves a case: "is it sorted now?", on the channel the
customer last answered on. The answer closes the case as recovered (4-5) or reopens it (1-2);
a case asks at most CARELOOP_CASE_FOLLOW_UPS times. These are round-3 care actions: the
dissatisfied rule only ever takes first-round ratings, so nobody is cared for twice for one
evaluation, and dispatch sends them under the same standard (windows, opt-outs, expiry)."""

from __future__ import annotations

from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from campaigns.catalog import Broken, load_campaigns
from campaigns.content import LinkSettings, StepRenderer
from campaigns.planning import action_id
from campaigns.sms import segment_count
from campaigns.spec import Campaign, CareStep, validity_seconds
from cases.machine import Event, State, apply_rows
from cases.notes import NO_CONSENT, NO_CONTACT, NOT_ASKED, OPTED_OUT
from core.settings import Settings
from core.yaml_files import YamlFileError, read_yaml
from warehouse.db import query_dicts, register_frame, transaction

SPEC = Path(__file__).resolve().parents[1] / "campaigns" / "follow_up.yaml"
# A follow-up goes in its case's campaign's send window (the default where the campaign is
# gone), and stays worth sending for follow_up.yaml's valid_for (else this).
DEFAULT_WINDOW = Campaign.model_fields["send_window"].default
FOLLOW_UP_VALID_FOR = "3d"
ROUND = 3
CONTACT = {"sms": "phone", "voice": "phone", "email": "email"}

# The resolved cases not asked since they were resolved: manager_cases alone, so a collect
# with nothing due reads no more than the cases (never the outbox or the customers).
DUE_CASES_SQL = """
CREATE OR REPLACE TEMP TABLE follow_ups_due AS
SELECT evaluation_id FROM manager_cases
WHERE status = $resolved AND coalesce(follow_ups, 0) < $cap
  AND (follow_up_asked_at IS NULL OR follow_up_asked_at < closed_at)
"""
# What a follow-up of each due case needs (a few cases a day: looked up by key).
DUE_SQL = """
SELECT m.evaluation_id AS case_id, m.campaign_id, m.store_id, m.subscriber_id,
       coalesce(m.follow_ups, 0) AS asked, m.status,
       s.name, s.tier, s.locale, s.timezone, s.phone, s.email,
       st.name AS store_name, st.city AS store_city,
       c.channel,
       CASE c.channel WHEN 'sms' THEN s.sms_consent
            WHEN 'email' THEN s.email_consent ELSE s.voice_consent END AS consent,
       EXISTS (SELECT 1 FROM active_opt_outs o WHERE o.subscriber_id = m.subscriber_id
               AND o.channel = c.channel)
       OR (c.channel IN ('sms', 'voice')
           AND EXISTS (SELECT 1 FROM active_phone_opt_outs o
                       WHERE o.phone = s.phone AND o.occurred_at >= s.joined_on))
           AS opted_out
FROM manager_cases m
JOIN subscribers s USING (subscriber_id)
-- the channel the case's survey was rated on, looked up by key (the evaluations have none)
LEFT JOIN action_ratings r1 ON r1.action_id = m.action_id
LEFT JOIN care_actions a ON a.action_id = m.action_id
LEFT JOIN stores st ON st.store_id = m.store_id
LEFT JOIN action_ratings r2 ON r2.action_id = m.second_round_action_id
-- asked on the channel its second round was answered on, else the survey's
CROSS JOIN LATERAL (SELECT coalesce(r2.channel, r1.channel, a.channel) AS channel) c
WHERE m.evaluation_id IN (SELECT evaluation_id FROM follow_ups_due)
  -- a case whose survey and rating are both gone (made by hand) has no channel to ask on
  AND c.channel IS NOT NULL
"""
# Every follow-up of a run in one statement, from the frame ``follow_ups`` (one row a case).
INSERT_SQL = """
INSERT INTO care_actions (action_id, idempotency_key, run_id, campaign_id, subscriber_id,
    occasion, round, parent_evaluation_id, store_id, tier, locale, channel, recipient,
    offer_code, subject, body, survey, status, scheduled_at, created_at, updated_at, timezone,
    window_start, window_end, segments, expires_at)
SELECT action_id, key, $run, campaign_id, subscriber_id, occasion, 3, case_id, store_id, tier,
    locale, channel, recipient, 'FOLLOW-UP', subject, body, true, 'queued', $now, $now, $now,
    timezone, CASE WHEN channel <> 'email' THEN window_start END,
    CASE WHEN channel <> 'email' THEN window_end END, segments, $now + to_seconds($valid)
FROM follow_ups
"""  # no ON CONFLICT: see campaigns.planning.OUTBOX_CONFLICT
ASKED_SQL = """
UPDATE manager_cases SET follow_ups = coalesce(follow_ups, 0) + 1, updated_at = $now,
    follow_up_asked_at = $now
WHERE evaluation_id IN (SELECT case_id FROM follow_ups)
"""
# A case that cannot be asked keeps its resolution (the machine's not-asked event says why
# in its history), and it is not looked at again.
GIVEN_UP_SQL = """
UPDATE manager_cases SET follow_ups = $cap WHERE evaluation_id IN (SELECT case_id FROM unreachable)
"""


@cache
def follow_up_step() -> CareStep:
    try:
        return CareStep.model_validate(read_yaml(SPEC))
    except YamlFileError as exc:
        raise ValueError(f"{SPEC}: {exc}") from None


def plan_follow_ups(con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime) -> int:
    """A survey for each newly resolved case; returns how many were queued. A case whose
    customer cannot be reached on that channel now (opted out, no consent) keeps its
    resolution, and its history says why. Only the messages are rendered case by case; the
    cases are read and written once for the whole run."""
    params = {"cap": settings.case_follow_ups, "resolved": State.RESOLVED.value}
    con.execute(DUE_CASES_SQL, params)
    [(waiting,)] = con.execute("SELECT count(*) FROM follow_ups_due").fetchall()
    if not waiting:  # most collects: no campaign file need be read
        return 0
    due = query_dicts(con, DUE_SQL, {})
    renderer = StepRenderer(
        follow_up_step(), LinkSettings(settings.public_url, settings.link_secret.get_secret_value())
    )
    # a campaign that does not load (a bad file added) gives its cases the default window
    loaded = load_campaigns(settings, broken=Broken())
    windows = {name: c.campaign.send_window for name, c in loaded.items()}
    queued: list[dict[str, Any]] = []
    unreachable: list[dict[str, Any]] = []
    for case in due:
        recipient = case[CONTACT[case["channel"]]]
        reason = _unreachable(case, recipient)
        if reason:
            unreachable.append(
                {"case_id": case["case_id"], "asked": case["asked"], "reason": reason}
            )
        else:
            window = windows.get(case["campaign_id"], DEFAULT_WINDOW)
            queued.append(_follow_up(renderer, case, str(recipient), window, now))
    # One transaction: a follow-up queued is a case marked asked. Cut between the two, the
    # next run would ask again under the next day's action id.
    with transaction(con):
        if unreachable:
            apply_rows(con, [_not_asked(case, now) for case in unreachable])
            register_frame(con, "unreachable", pl.DataFrame(unreachable))
            con.execute(GIVEN_UP_SQL, {"cap": settings.case_follow_ups})
            con.unregister("unreachable")
        if queued:
            register_frame(con, "follow_ups", pl.DataFrame(queued, schema=FOLLOW_UP_SCHEMA))
            valid = validity_seconds(follow_up_step().valid_for or FOLLOW_UP_VALID_FOR)
            run = f"follow-up-{now:%Y-%m-%d}"
            con.execute(INSERT_SQL, {"run": run, "now": now, "valid": valid})
            con.execute(ASKED_SQL, {"now": now})
            con.unregister("follow_ups")
    return len(queued)


def _not_asked(case: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "event_key": f"follow-up:{case['case_id']}:{case['asked']}",
        "case_id": case["case_id"], "event": Event.NOT_ASKED.value,
        "occurred_at": now, "actor": "system", "note": f"{NOT_ASKED}{case['reason']}",
    }  # fmt: skip


def _unreachable(case: dict[str, Any], recipient: object) -> str | None:
    if not recipient:
        return f"{NO_CONTACT}{CONTACT[case['channel']]}"
    if case["opted_out"]:
        return f"{OPTED_OUT}{case['channel']}"
    if not case["consent"]:
        return f"{NO_CONSENT}{case['channel']}"
    return None


FOLLOW_UP_SCHEMA = pl.Schema(
    {
        "action_id": pl.String(), "key": pl.String(), "case_id": pl.String(),
        "campaign_id": pl.String(), "subscriber_id": pl.String(), "occasion": pl.String(),
        "store_id": pl.String(), "tier": pl.String(), "locale": pl.String(),
        "channel": pl.String(), "recipient": pl.String(), "subject": pl.String(),
        "body": pl.String(), "timezone": pl.String(), "segments": pl.Int32(),
        "window_start": pl.Time(), "window_end": pl.Time(),
    }
)  # fmt: skip


def _follow_up(
    renderer: StepRenderer,
    case: dict[str, Any],
    recipient: str,
    window: tuple[time, time],
    now: datetime,
) -> dict[str, Any]:
    """One follow-up's row of ``follow_ups``: its keys and its rendered message."""
    occasion = f"follow-up-{case['case_id']}-{case['asked'] + 1}"
    key = f"{case['campaign_id']}|{case['subscriber_id']}|{occasion}|{ROUND}"
    made = action_id(now.date(), key)
    context = {**case, "offer": "", "offer_code": "FOLLOW-UP"}
    subject, body = renderer.render(case["channel"], made, context, now)
    return {
        "action_id": made, "key": key, "case_id": case["case_id"],
        "campaign_id": case["campaign_id"], "subscriber_id": case["subscriber_id"],
        "occasion": occasion, "store_id": case["store_id"], "tier": case["tier"],
        "locale": case["locale"], "channel": case["channel"], "recipient": recipient,
        "subject": subject, "body": body, "timezone": case["timezone"],
        "segments": segment_count(body) if case["channel"] == "sms" else None,
        "window_start": window[0], "window_end": window[1],
    }  # fmt: skip
