"""A year of the daily loop's leftovers, generated set-based in DuckDB for the year benchmark.

On top of a population (stores, subscribers: ``segments_bench.ensure_warehouse``), each history
day ``d`` gets what the loop would have appended that day, in the shapes the product writes:

- store visits: about 1% of subscribers visit a store on the day before ``d`` (local opening
  hours); the file ``careloop load visits`` would have loaded on ``d``'s morning;
- care actions (the outbox): birthday and tenure anniversaries of ``d``, one store-visit survey
  per subscriber, store and day, ids and keys as ``campaigns/planning.py`` makes them
  (``ca_``, the plan's day, then md5 of ``campaign|subscriber|occasion|round``; a follow-up's
  day is its run's UTC date), the real holdout rule, channels
  by contact data and consent, and fates: delivered, sent, failed, expired, suppressed;
- replies: evaluations (``ev_`` + md5 of the inbound dedupe key, keys shaped as
  ``feedback/ingest.py`` lands them), their raw inbound messages, the delivery status callbacks
  (inbound messages and delivery events), opt-outs from STOP replies;
- the dissatisfied: second-round care actions, manager cases and their case events.

Pseudo-randomness is DuckDB's ``hash`` of row coordinates, so a build is reproducible. Rows go
in chronological order: chunk by chunk of days, each table's rows ordered by their own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta

import duckdb

from campaigns.planning import action_id_sql
from cases.lifecycle import ratings_seen
from warehouse.ratings import record_ratings

BUSINESS_ZONE = "Asia/Shanghai"
SANDBOX_NUMBER = "+10000000000"
SANDBOX_EMAIL = "care@example.com"
SERVICE_TYPES = ["new_line", "upgrade", "repair", "billing", "plan_change", "sim_swap"]
# How many subscribers visit a store a day, and of the surveys delivered, how many answer.
VISIT_SHARE = 0.01
REPLY_RATE = {"sms": 0.22, "voice": 0.25, "email": 0.12}
SECOND_ROUND_REPLY_RATE = 0.35

MACROS = """
CREATE OR REPLACE TEMP MACRO u(a, b) AS (hash(a, b) % 1000003) / 1000003.0;
CREATE OR REPLACE TEMP MACRO local_at(tz, d, t) AS timezone(tz, d + t);
"""


def _r1_targets_sql() -> str:
    """Birthday and tenure anniversaries of the chunk's days, and the store-visit surveys of
    the chunk's visits (planned the morning after), as the rules would list them."""
    return """
CREATE OR REPLACE TEMP TABLE h_targets AS
WITH years AS (SELECT unnest([year($first::DATE), year($last::DATE)]) AS y),
births AS (
    SELECT DISTINCT s.subscriber_id, CAST(s.birthday + to_years(y - year(s.birthday)) AS DATE)
           AS day, y - year(s.birthday) AS n
    FROM subscribers s, years WHERE s.birthday IS NOT NULL
), joins AS (
    SELECT DISTINCT s.subscriber_id, CAST(s.joined_on + to_years(y - year(s.joined_on)) AS DATE)
           AS day, y - year(s.joined_on) AS n
    FROM subscribers s, years
)
SELECT 'birthday' AS campaign, subscriber_id, 'birthday-' || CAST(year(day) AS VARCHAR) AS occasion,
       NULL::VARCHAR AS store_id, day, NULL::TIMESTAMPTZ AS due_at,
       NULL::TIMESTAMPTZ AS occasion_at, TIME '10:00' AS send_time, TIME '07:00' AS run_time
FROM births WHERE day BETWEEN $first AND $last AND n >= 1
UNION ALL
SELECT 'tenure', subscriber_id, 'tenure-' || CAST(n AS VARCHAR), NULL, day, NULL, NULL,
       TIME '11:00', TIME '07:10'
FROM joins WHERE day BETWEEN $first AND $last AND n >= 1 AND (n IN (1, 3, 5) OR n % 5 = 0)
UNION ALL
SELECT 'store_visit', subscriber_id,
       'visit-' || store_id || '-' || strftime(visit_day, '%Y-%m-%d'), store_id,
       visit_day + 1, max(visited_at) + INTERVAL 120 MINUTE, max(visited_at), TIME '10:00',
       TIME '07:20'
FROM h_visits GROUP BY subscriber_id, store_id, visit_day
"""


def _offer_sql(campaign: str, round_: str) -> str:
    return f"""CASE WHEN {round_} = 3 THEN 'FOLLOW-UP'
    WHEN {round_} = 2 THEN CASE {campaign} WHEN 'birthday' THEN 'SORRY-CALLBACK'
        WHEN 'tenure' THEN 'SORRY-REVIEW' ELSE 'SORRY-STORE' END
    WHEN {campaign} = 'store_visit' THEN 'VISIT-SURVEY'
    WHEN {campaign} = 'birthday' THEN CASE tier WHEN 'standard' THEN 'BDAY-2GB'
        WHEN 'silver' THEN 'BDAY-5GB' WHEN 'gold' THEN 'BDAY-10GB' ELSE 'BDAY-VIP' END
    ELSE CASE tier WHEN 'standard' THEN 'TENURE-DATA' WHEN 'silver' THEN 'TENURE-DATA3'
        WHEN 'gold' THEN 'TENURE-UPGRADE' ELSE 'TENURE-VIP' END END"""


# What a planned action became: its channel, why not sent, its fate at dispatch, its times.
# Input columns: campaign, round, subscriber_id, occasion, store_id, day, due_at, occasion_at,
# send_time, run_time (business zone), created_at, parent_evaluation_id, channels order.
ACTION_COLUMNS = """
    action_id, idempotency_key, run_id, campaign_id, subscriber_id, occasion, round,
    parent_evaluation_id, store_id, tier, locale, channel, recipient, offer_code, subject, body,
    survey, status, suppression_reason, scheduled_at, created_at, claimed_at, sent_at, attempts,
    provider_id, error_code, error, updated_at, timezone, window_start, window_end, segments,
    sender, expires_at"""


CHANNELS = {
    # a first round: the campaigns' order (sms, email, voice)
    1: """CASE WHEN phone IS NOT NULL AND sms_consent THEN 'sms'
               WHEN email IS NOT NULL AND email_consent THEN 'email'
               WHEN phone IS NOT NULL AND voice_consent THEN 'voice' END""",
    # a second round: voice first
    2: """CASE WHEN phone IS NOT NULL AND voice_consent THEN 'voice'
               WHEN phone IS NOT NULL AND sms_consent THEN 'sms'
               WHEN email IS NOT NULL AND email_consent THEN 'email' END""",
    # a manager's follow-up: the channel the customer answered on, if still allowed
    3: """CASE t.hint WHEN 'sms' THEN CASE WHEN phone IS NOT NULL AND sms_consent THEN 'sms' END
               WHEN 'voice' THEN CASE WHEN phone IS NOT NULL AND voice_consent THEN 'voice' END
               ELSE CASE WHEN email IS NOT NULL AND email_consent THEN 'email' END END""",
}


# The day an action id begins with: a plan's business day, a follow-up's run's UTC date.
FOLLOW_UP_OR_PLAN_DAY = "CASE WHEN round = 3 THEN timezone('UTC', created_at)::DATE ELSE day END"


def _actions_sql(source: str, table: str, round_: int) -> str:
    channel = CHANNELS[round_]
    first_round = round_ == 1
    holdout = (
        """WHEN u(ikey, 'cap') < 0.02 THEN 'capped'
           WHEN md5_number(subscriber_id || '|' || campaign) % 10000
                < CASE campaign WHEN 'store_visit' THEN 500 ELSE 1000 END THEN 'holdout'"""
        if first_round
        else ""
    )
    return f"""
CREATE OR REPLACE TEMP TABLE {table} AS
WITH j AS (
    SELECT t.*, s.name, s.tier, s.locale, s.timezone, s.phone, s.email,
        coalesce(t.store_id, s.home_store_id) AS store,
        t.campaign || '|' || t.subscriber_id || '|' || t.occasion || '|' || CAST(t.round AS VARCHAR)
            AS ikey,
        {channel} AS channel,
        CASE WHEN s.phone IS NULL AND s.email IS NULL THEN 'no_contact' ELSE 'no_consent' END
            AS unreachable
    FROM {source} t JOIN subscribers s USING (subscriber_id)
), scheduled AS (
    SELECT *, coalesce(timezone(timezone, due_at), day + send_time) AS due_local FROM j
), windowed AS (
    SELECT *, timezone(timezone, CASE
        WHEN channel = 'email' THEN due_local
        WHEN due_local::TIME < TIME '09:00' THEN due_local::DATE + TIME '09:00'
        WHEN due_local::TIME >= TIME '21:00' THEN due_local::DATE + 1 + TIME '09:00'
        ELSE due_local END) AS scheduled_at,
        CASE WHEN channel IS NULL THEN unreachable {holdout} END AS planned_reason,
        u(ikey, 'fate') AS fate
    FROM scheduled
), moments AS (
    SELECT *, greatest(scheduled_at, created_at,
            timezone('{BUSINESS_ZONE}', day + TIME '12:00'))
            + to_seconds(CAST(u(ikey, 'jitter') * 900 AS INTEGER)) AS sent_moment
    FROM windowed
), fated AS (
    SELECT *, CASE
        WHEN planned_reason = 'holdout' THEN 'held_out'
        WHEN planned_reason IS NOT NULL THEN 'suppressed'
        WHEN sent_moment >= $cutoff THEN 'queued'
        WHEN fate < 0.02 THEN 'opted_out'
        WHEN fate < 0.045 THEN 'expired'
        WHEN fate < 0.07 THEN 'failed'
        WHEN fate < 0.11 THEN 'sent'
        ELSE 'delivered' END AS fate_status,
        CASE WHEN round = 1 AND campaign <> 'store_visit'
             THEN timezone(timezone, (day + 1)::TIMESTAMP)
             WHEN round = 1 THEN occasion_at + INTERVAL 48 HOUR
             WHEN round = 3 THEN created_at + INTERVAL 3 DAY
             ELSE occasion_at + INTERVAL 72 HOUR END AS expiry
    FROM moments
)
SELECT {action_id_sql(FOLLOW_UP_OR_PLAN_DAY, "ikey")} AS action_id, ikey AS idempotency_key,
    CASE WHEN round = 3 THEN 'follow-up-' || strftime(created_at, '%Y-%m-%d') ELSE
    campaign || '-' || strftime(day, '%Y-%m-%d') || '-r' || CAST(round AS VARCHAR) || '-'
        || substr(md5(campaign || CAST(created_at AS VARCHAR)), 1, 8) END AS run_id,
    campaign AS campaign_id, subscriber_id, occasion, round, parent_evaluation_id,
    store AS store_id, tier, locale, channel,
    CASE WHEN channel = 'email' THEN email WHEN channel IS NOT NULL THEN phone END AS recipient,
    {_offer_sql("campaign", "round")} AS offer_code,
    CASE WHEN channel = 'email' THEN CASE locale WHEN 'en' THEN name || ', a note from us'
        ELSE name || '，您好' END END AS subject,
    CASE locale WHEN 'en' THEN CASE campaign
            WHEN 'birthday' THEN 'Happy birthday, ' || name || '! We''ve added a gift to your '
                || 'account. How do you like your birthday care? Reply 1-5.'
            WHEN 'tenure' THEN name || ', thank you for being with us! Enjoy your tenure gift. '
                || 'How satisfied are you with our service? Reply 1-5.'
            ELSE name || ', thanks for visiting today. How satisfied were you with the '
                || 'service? Reply 1-5.' END
        ELSE CASE campaign
            WHEN 'birthday' THEN name || '，祝您生日快乐！我们为您准备了生日礼物，'
                || '已自动放入您的账户。'
                || '您对这次生日关怀满意吗？回复1-5分。'
            WHEN 'tenure' THEN name || '，感谢您多年来的陪伴！为您送上周年礼遇。'
                || '您对我们的服务满意吗？回复1-5分。'
            ELSE name || '，感谢您今天光临。您对本次门店服务满意吗？回复1-5分。' END
        END AS body,
    true AS survey,
    CASE fate_status WHEN 'opted_out' THEN 'suppressed' ELSE fate_status END AS status,
    CASE WHEN fate_status = 'opted_out' THEN 'opted_out' WHEN fate_status = 'expired'
         THEN 'expired' ELSE planned_reason END AS suppression_reason,
    scheduled_at, created_at,
    CASE WHEN fate_status IN ('sent', 'delivered', 'failed') THEN sent_moment END AS claimed_at,
    CASE WHEN fate_status IN ('sent', 'delivered') THEN sent_moment END AS sent_at,
    CASE WHEN fate_status IN ('sent', 'delivered', 'failed') THEN 1 ELSE 0 END AS attempts,
    CASE WHEN fate_status IN ('sent', 'delivered') THEN
        CASE channel WHEN 'sms' THEN 'SM' WHEN 'voice' THEN 'CA' ELSE 'SG' END || md5(ikey)
        END AS provider_id,
    CASE WHEN fate_status = 'failed' THEN 'invalid_recipient' END AS error_code,
    CASE WHEN fate_status = 'failed' THEN 'not a valid ' || channel || ' address'
         WHEN fate_status = 'expired' THEN 'expired at '
             || strftime(expiry, '%Y-%m-%d %H:%M UTC') || ' before it could be sent'
         END AS error,
    CASE fate_status WHEN 'delivered' THEN sent_moment + INTERVAL 3 SECOND
        WHEN 'sent' THEN sent_moment WHEN 'failed' THEN sent_moment
        WHEN 'expired' THEN expiry WHEN 'opted_out' THEN scheduled_at
        ELSE created_at END AS updated_at,
    timezone,
    CASE WHEN channel IN ('sms', 'voice') THEN TIME '09:00' END AS window_start,
    CASE WHEN channel IN ('sms', 'voice') THEN TIME '21:00' END AS window_end,
    CASE WHEN channel = 'sms' THEN CASE WHEN locale = 'en' THEN 1 ELSE 2 END END AS segments,
    CASE WHEN fate_status IN ('sent', 'delivered') THEN
        CASE channel WHEN 'email' THEN '{SANDBOX_EMAIL}' ELSE '{SANDBOX_NUMBER}' END
        END AS sender,
    expiry AS expires_at
FROM fated
"""


R1_SOURCE = f"""(SELECT campaign, 1 AS round, subscriber_id, occasion, store_id, day, due_at,
    occasion_at, send_time, run_time, timezone('{BUSINESS_ZONE}', day + run_time) AS created_at,
    NULL::VARCHAR AS parent_evaluation_id, NULL::VARCHAR AS hint FROM h_targets)"""

# Replies to delivered (or sent) surveys: the inbound item, its parse and its attribution.
EVALUATIONS_SQL = """
CREATE OR REPLACE TEMP TABLE {table} AS
WITH answered AS (
    SELECT a.*, u(a.action_id, 'how') AS how, u(a.action_id, 'score') AS s,
           u(a.action_id, 'delay') AS delay
    FROM {actions} a
    WHERE a.status IN ('sent', 'delivered')
      AND u(a.action_id, 'reply') < CASE WHEN a.round >= 2 THEN {second}
          ELSE CASE a.channel WHEN 'sms' THEN {sms} WHEN 'voice' THEN {voice} ELSE {email} END
          END
), parsed AS (
    SELECT *,
        CASE channel WHEN 'sms' THEN 'sms:SM' || md5('reply:' || provider_id)
            WHEN 'voice' THEN 'ivr:' || provider_id || ':gather'
            ELSE 'email_rating:rating:' || action_id END AS dedupe_key,
        CASE channel WHEN 'sms' THEN CASE WHEN how < 0.02 THEN 'opt_out'
                                          WHEN how < 0.06 THEN 'unknown' ELSE 'rating' END
            WHEN 'voice' THEN CASE WHEN how < 0.1 THEN 'unknown' ELSE 'rating' END
            ELSE 'rating' END AS intent,
        CASE WHEN round >= 2 THEN CASE WHEN s < 0.08 THEN 1 WHEN s < 0.18 THEN 2
                                      WHEN s < 0.35 THEN 3 WHEN s < 0.65 THEN 4 ELSE 5 END
             ELSE CASE WHEN s < 0.06 THEN 1 WHEN s < 0.13 THEN 2 WHEN s < 0.28 THEN 3
                       WHEN s < 0.60 THEN 4 ELSE 5 END END AS score_drawn,
        sent_at + CASE channel
            WHEN 'sms' THEN to_seconds(CAST(60 + 14400 * delay * delay * delay AS INTEGER))
                + CASE WHEN u(action_id, 'late') < 0.01 THEN INTERVAL 4 DAY ELSE INTERVAL 0 DAY END
            WHEN 'voice' THEN to_seconds(CAST(25 + 65 * delay AS INTEGER))
            ELSE to_seconds(CAST(300 + 36000 * delay * delay AS INTEGER)) END AS received_at
    FROM answered
)
SELECT 'ev_' || substr(md5(dedupe_key), 1, 24) AS evaluation_id, dedupe_key,
    CASE WHEN received_at - sent_at <= INTERVAL 72 HOUR THEN action_id END AS action_id,
    subscriber_id, campaign_id, round, store_id, channel,
    CASE WHEN channel = 'sms' THEN recipient END AS sender, intent,
    CASE WHEN intent = 'rating' THEN score_drawn END AS score,
    CASE WHEN intent = 'rating' AND score_drawn <= 2 AND u(action_id, 'said') < 0.6 THEN
        CASE locale WHEN 'en' THEN ['waited over an hour', 'staff were rude',
            'still not fixed', 'charged twice'][1 + CAST(u(action_id, 'what') * 4 AS INTEGER) % 4]
        ELSE ['等了一个多小时', '服务态度差', '问题还没解决', '被多扣了费'][
            1 + CAST(u(action_id, 'what') * 4 AS INTEGER) % 4] END END AS comment,
    CASE WHEN received_at - sent_at <= INTERVAL 72 HOUR THEN 'matched' ELSE 'late' END
        AS attribution,
    received_at,
    CASE WHEN channel = 'email' AND intent = 'rating' THEN json_object(
        'problem_solved',
            greatest(1, least(5, score_drawn + CAST(u(action_id, 'a1') * 2 AS INT) - 1)),
        'wait_time',
            greatest(1, least(5, score_drawn + CAST(u(action_id, 'a2') * 2 AS INT) - 1)),
        'staff_attitude', greatest(1, least(5, 3 + CAST(u(action_id, 'a3') * 3 AS INT) - 1)))
        END AS attributes,
    locale, provider_id, recipient AS customer, action_id AS answered_action
FROM parsed
WHERE received_at < $cutoff
"""

# Second rounds for the dissatisfied: care again (voice first), 72 hours valid.
R2_SOURCE_SQL = f"""
CREATE OR REPLACE TEMP TABLE h_r2_source AS
SELECT e.campaign_id AS campaign, 2 AS round, e.subscriber_id,
    'complaint-' || e.evaluation_id AS occasion, e.store_id,
    CAST(timezone('{BUSINESS_ZONE}', e.received_at) AS DATE) AS day,
    e.received_at + INTERVAL 60 MINUTE AS due_at, e.received_at AS occasion_at,
    TIME '10:00' AS send_time, TIME '00:30' AS run_time,
    date_trunc('hour', e.received_at + INTERVAL 30 MINUTE) + INTERVAL 30 MINUTE AS created_at,
    e.evaluation_id AS parent_evaluation_id, NULL::VARCHAR AS hint
FROM h_r1_evals e
WHERE e.intent = 'rating' AND e.attribution = 'matched' AND e.score <= 2 AND e.round = 1
  AND date_trunc('hour', e.received_at + INTERVAL 30 MINUTE) + INTERVAL 30 MINUTE < $cutoff
"""

# Managers work their cases, as the product expects of them: nine in ten resolve a case in
# one to two days, from when it opened or, when its second round left it unresolved (rated
# 1-3, or no answer in 72 hours), from then. The rest stay on the boards, a backlog that grows
# with the history (the boards and the store lists read every active case).
CASES_SQL = """
CREATE OR REPLACE TEMP TABLE h_cases AS
WITH c AS (
    SELECT e.evaluation_id, e.store_id, e.subscriber_id, e.campaign_id, e.action_id, e.score,
        e.comment, e.received_at AS opened_at, e.channel, r.action_id AS r2_action,
        r.status AS r2_status, r.sent_at AS r2_sent,
        ans.score AS r2_score, ans.received_at AS r2_at, ans.evaluation_id AS r2_eval,
        u(e.evaluation_id, 'manager') AS m
    FROM h_r1_evals e
    JOIN h_r2 r ON r.parent_evaluation_id = e.evaluation_id
    LEFT JOIN h_r2_evals ans ON ans.answered_action = r.action_id AND ans.intent = 'rating'
        AND ans.attribution = 'matched'
), first AS (
    SELECT *,
        CASE WHEN r2_score >= 4 THEN 'recovered' WHEN r2_score IS NOT NULL THEN 'unresolved'
             WHEN m < 0.9 AND opened_at + INTERVAL 2 DAY < $cutoff THEN 'resolved'
             WHEN m < 0.95 AND opened_at + INTERVAL 1 DAY < $cutoff THEN 'contacted'
             WHEN r2_sent IS NOT NULL AND r2_sent + INTERVAL 72 HOUR <= $cutoff THEN 'unresolved'
             ELSE 'open' END AS first_status,
        coalesce(r2_at, r2_sent + INTERVAL 72 HOUR) AS unresolved_at
    FROM c
), worked AS (
    SELECT *,
        CASE WHEN first_status = 'unresolved' THEN unresolved_at ELSE opened_at END AS worked_from
    FROM first
)
SELECT *,
    CASE WHEN first_status <> 'unresolved' OR m >= 0.9 THEN first_status
         WHEN unresolved_at + INTERVAL 2 DAY < $cutoff THEN 'resolved'
         WHEN unresolved_at + INTERVAL 1 DAY < $cutoff THEN 'contacted'
         ELSE first_status END AS status,
    worked_from + to_seconds(CAST(3600 + m * 72000 AS INTEGER)) AS contacted,
    worked_from + to_seconds(CAST(86400 + m * 86400 AS INTEGER)) AS resolved
FROM worked
"""

# A resolved case asks its customer again (cases/follow_up.py): a round-3 survey on the channel
# they answered on, or, when that channel is closed now, no survey and no more asking.
R3_SOURCE_SQL = f"""
CREATE OR REPLACE TEMP TABLE h_r3_source AS
SELECT campaign_id AS campaign, 3 AS round, subscriber_id,
    'follow-up-' || evaluation_id || '-1' AS occasion, store_id,
    CAST(timezone('{BUSINESS_ZONE}', resolved) AS DATE) AS day,
    resolved + INTERVAL 5 MINUTE AS due_at, resolved + INTERVAL 5 MINUTE AS occasion_at,
    TIME '10:00' AS send_time, TIME '00:00' AS run_time,
    resolved + INTERVAL 5 MINUTE AS created_at, evaluation_id AS parent_evaluation_id,
    channel AS hint
FROM h_cases WHERE status = 'resolved'
"""

CASES_FINAL_SQL = """
CREATE OR REPLACE TEMP TABLE h_cases_final AS
SELECT c.*, f.action_id AS r3_action, f.channel AS r3_channel, a.score AS r3_score,
    a.received_at AS r3_at, a.evaluation_id AS r3_eval,
    CASE WHEN c.status = 'resolved' AND a.score >= 4 THEN 'recovered'
         WHEN c.status = 'resolved' AND a.score <= 2 THEN 'open'
         ELSE c.status END AS final_status
FROM h_cases c
LEFT JOIN h_r3 f ON f.parent_evaluation_id = c.evaluation_id
LEFT JOIN h_r3_evals a ON a.answered_action = f.action_id AND a.intent = 'rating'
    AND a.attribution = 'matched'
"""

INSERT_CASES_SQL = """
INSERT INTO manager_cases (evaluation_id, store_id, subscriber_id, campaign_id, action_id, score,
    comment, opened_at, second_round_action_id, recovered_score, status, contacted_at,
    closed_at, escalated_at, updated_at, follow_ups, follow_up_asked_at)
SELECT evaluation_id, store_id, subscriber_id, campaign_id, action_id, score, comment,
    opened_at,
    CASE WHEN r2_status NOT IN ('suppressed', 'held_out') THEN r2_action END,
    r2_score,
    final_status,
    CASE WHEN status IN ('resolved', 'contacted') THEN contacted END,
    CASE WHEN final_status = 'recovered' AND status = 'resolved' THEN r3_at
         WHEN final_status = 'resolved' THEN resolved
         WHEN final_status = 'recovered' THEN r2_at END,
    CASE WHEN u(evaluation_id, 'late') < 0.05 THEN opened_at + INTERVAL 48 HOUR END,
    CASE WHEN final_status <> status THEN r3_at
        ELSE CASE status WHEN 'recovered' THEN r2_at WHEN 'resolved' THEN resolved
            WHEN 'contacted' THEN contacted
            WHEN 'unresolved' THEN unresolved_at
            ELSE opened_at END END,
    CASE WHEN r3_action IS NULL THEN 0 WHEN r3_channel IS NULL THEN 2 ELSE 1 END,
    -- asked when its follow-up was made, as cases/follow_up.py marks it (migration 0026)
    CASE WHEN r3_action IS NOT NULL THEN resolved + INTERVAL 5 MINUTE END
FROM h_cases_final ORDER BY opened_at
"""

CASE_EVENTS_SQL = """
INSERT INTO case_events (event_key, evaluation_id, occurred_at, actor, from_status, to_status,
    note, accepted)
SELECT * FROM (
    SELECT 'rating:' || r2_eval, evaluation_id, r2_at, 'customer', 'open', first_status, NULL,
        true
    FROM h_cases_final WHERE r2_score IS NOT NULL
    UNION ALL
    SELECT 'no-answer:' || evaluation_id, evaluation_id, r2_sent + INTERVAL 72 HOUR, 'system',
        'open', 'unresolved', 'no answer to the second round', true
    FROM h_cases_final WHERE first_status = 'unresolved' AND r2_score IS NULL
    UNION ALL
    SELECT 'inbox:case:' || md5(evaluation_id || '|contacted'), evaluation_id, contacted,
        'manager:' || store_id, CASE first_status WHEN 'unresolved' THEN 'unresolved'
            ELSE 'open' END, 'contacted', NULL, true
    FROM h_cases_final WHERE status IN ('resolved', 'contacted')
    UNION ALL
    SELECT 'inbox:case:' || md5(evaluation_id || '|resolved'), evaluation_id, resolved,
        'manager:' || store_id, 'contacted', 'resolved', 'called the customer back', true
    FROM h_cases_final WHERE status = 'resolved'
    UNION ALL
    SELECT 'follow-up:' || evaluation_id || ':0', evaluation_id, resolved + INTERVAL 5 MINUTE,
        'system', 'resolved', 'resolved', 'not asked again: no consent for ' || channel, true
    FROM h_cases_final WHERE r3_action IS NOT NULL AND r3_channel IS NULL
    UNION ALL
    SELECT 'rating:' || r3_eval, evaluation_id, r3_at, 'customer', 'resolved', final_status,
        NULL, true
    FROM h_cases_final WHERE r3_score IS NOT NULL AND r3_score <> 3
) ORDER BY 3
"""

ALL_EVALUATIONS = (
    "SELECT * FROM h_r1_evals UNION ALL SELECT * FROM h_r2_evals UNION ALL SELECT * FROM h_r3_evals"
)
INSERT_EVALUATIONS_SQL = """
INSERT INTO evaluations (evaluation_id, dedupe_key, action_id, subscriber_id, campaign_id,
    round, store_id, channel, sender, intent, score, comment, attribution, received_at,
    attributes)
SELECT evaluation_id, dedupe_key, action_id, subscriber_id, campaign_id, round, store_id,
    channel, sender, intent, score, comment, attribution, received_at, attributes
FROM (SELECT * FROM h_r1_evals UNION ALL SELECT * FROM h_r2_evals UNION ALL
    SELECT * FROM h_r3_evals) ORDER BY received_at
"""

# The raw inbound items: each reply as the webhook service lands it, each delivery callback.
INBOUND_SQL = f"""
INSERT INTO inbound_messages
SELECT dedupe_key, $first_id + row_number() OVER (ORDER BY received_at, dedupe_key), kind,
    received_at, payload, received_at + INTERVAL 4 MINUTE
FROM (
    SELECT dedupe_key, CASE channel WHEN 'sms' THEN 'sms' WHEN 'voice' THEN 'ivr'
        ELSE 'email_rating' END AS kind, received_at,
        CASE channel
            WHEN 'sms' THEN json_object('MessageSid', substr(dedupe_key, 5), 'From', customer,
                'To', '{SANDBOX_NUMBER}', 'Body', CASE intent WHEN 'opt_out' THEN
                    CASE locale WHEN 'en' THEN 'STOP' ELSE '退订' END
                WHEN 'unknown' THEN CASE locale WHEN 'en' THEN 'who is this?' ELSE '你是谁？' END
                ELSE score::VARCHAR || coalesce(' ' || comment, '') END)
            WHEN 'voice' THEN json_object('CallSid', provider_id, 'action_id', answered_action,
                'Digits', CASE WHEN intent = 'rating' THEN score::VARCHAR ELSE '0' END)
            ELSE json_object('action_id', answered_action, 'score', score,
                'attributes', attributes) END AS payload
    FROM (SELECT * FROM h_r1_evals UNION ALL SELECT * FROM h_r2_evals UNION ALL
        SELECT * FROM h_r3_evals)
    UNION ALL
    SELECT 'status:' || provider_id || ':delivered', 'status', sent_at + INTERVAL 3 SECOND,
        json_object('provider_id', provider_id, 'status', 'delivered', 'channel', channel)
    FROM h_delivered
)
"""


def _visits_sql(subscribers: int, stores: list[str]) -> str:
    store_list = "[" + ", ".join(f"'{s}'" for s in stores) + "]"
    services = "[" + ", ".join(f"'{s}'" for s in SERVICE_TYPES) + "]"
    per_day = max(1, int(subscribers * VISIT_SHARE))
    return f"""
CREATE OR REPLACE TEMP TABLE h_visits AS
WITH draws AS (
    SELECT i, k, $day0::DATE + CAST(i AS INTEGER) - 1 AS visit_day,
           'S' || lpad(CAST(hash(i, k, 'who') % {subscribers} AS VARCHAR), 9, '0') AS subscriber_id
    FROM range($i0, $i1) r(i), range({per_day}) q(k)
)
SELECT 'V' || lpad(CAST(i * {per_day} + k AS VARCHAR), 10, '0') AS visit_id, d.subscriber_id,
    st.store_id, timezone(st.timezone, d.visit_day + to_minutes(
        CAST(540 + hash(i, k, 'minute') % 720 AS INTEGER))) AS visited_at,
    {services}[1 + CAST(hash(i, k, 'what') % {len(SERVICE_TYPES)} AS INTEGER)] AS service_type,
    d.visit_day
FROM draws d JOIN subscribers s USING (subscriber_id)
JOIN stores st ON st.store_id = CASE WHEN hash(i, k, 'home') % 100 < 85 THEN s.home_store_id
    ELSE {store_list}[1 + CAST(hash(i, k, 'store') % {len(stores)} AS INTEGER)] END
"""


def visits_per_day(subscribers: int) -> int:
    return max(1, int(subscribers * VISIT_SHARE))


def day_visits_sql(subscribers: int, stores: list[str]) -> str:
    """One day's visits (day index ``$i0``), as ``h_visits``: the benchmark day's file."""
    return _visits_sql(subscribers, stores)


def build_history(
    con: duckdb.DuckDBPyConnection,
    *,
    subscribers: int,
    day: date,
    days: int,
    chunk_days: int = 7,
    say: Callable[[str], None] = print,
    profile: bool = False,
) -> dict[str, int]:
    """Append ``days`` days of history before ``day`` (the benchmark's day); the rows per table.
    Nothing in it happens at or after ``cutoff`` (07:00 in the business zone on ``day``, when
    the benchmark's day starts): what would have been later is still queued, or not yet there.
    """
    con.execute(MACROS)
    stores = [r[0] for r in con.execute("SELECT store_id FROM stores ORDER BY 1").fetchall()]
    cutoff = con.execute(
        f"SELECT timezone('{BUSINESS_ZONE}', ?::DATE + TIME '07:00')", [day]
    ).fetchall()[0][0]
    day0 = day - timedelta(days=days)  # the first history day: visits of the day before it
    visits_sql = _visits_sql(subscribers, stores)
    inbox_id = 0
    con.execute("SET enable_progress_bar = false")
    if profile:
        raw_execute = con.execute

        def timed(sql: str, params: object = None) -> duckdb.DuckDBPyConnection:
            began = time.monotonic()
            result = raw_execute(sql, params)
            say(f"    {time.monotonic() - began:6.2f} s  {' '.join(sql.split())[:70]}")
            return result

        con = _Timed(con, timed)  # type: ignore[assignment]
    for start in range(0, days, chunk_days):
        end = min(start + chunk_days, days)
        first, last = day0 + timedelta(days=start), day0 + timedelta(days=end - 1)
        began = time.monotonic()
        con.execute("BEGIN TRANSACTION")
        con.execute(visits_sql, {"day0": day0, "i0": start, "i1": end})
        con.execute(
            "INSERT INTO store_visits SELECT visit_id, subscriber_id, store_id, visited_at,"
            " service_type FROM h_visits ORDER BY visited_at, visit_id"
        )
        con.execute(_r1_targets_sql(), {"first": first, "last": last})
        at = {"cutoff": cutoff}
        evals = EVALUATIONS_SQL.format(
            sms=REPLY_RATE["sms"], voice=REPLY_RATE["voice"], email=REPLY_RATE["email"],
            second=SECOND_ROUND_REPLY_RATE, table="{table}", actions="{actions}",
        )  # fmt: skip
        # What the chunk's days did, first in temp tables: each round feeds the next.
        con.execute(_actions_sql(R1_SOURCE, "h_r1", 1), at)
        con.execute(evals.format(table="h_r1_evals", actions="h_r1"), at)
        con.execute(R2_SOURCE_SQL, at)
        con.execute(_actions_sql("h_r2_source", "h_r2", 2), at)
        con.execute(evals.format(table="h_r2_evals", actions="h_r2"), at)
        con.execute(CASES_SQL, at)
        con.execute(R3_SOURCE_SQL)
        con.execute(_actions_sql("h_r3_source", "h_r3", 3), at)
        con.execute(evals.format(table="h_r3_evals", actions="h_r3"), at)
        con.execute(CASES_FINAL_SQL)
        # Then appended, each table in its own time order.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE h_actions AS SELECT * FROM h_r1 UNION ALL"
            " SELECT * FROM h_r2 UNION ALL SELECT * FROM h_r3 WHERE channel IS NOT NULL"
        )
        con.execute(
            f"INSERT INTO care_actions ({ACTION_COLUMNS}) SELECT {ACTION_COLUMNS} FROM h_actions"
            " ORDER BY created_at, action_id"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE h_delivered AS SELECT * FROM h_actions"
            " WHERE status = 'delivered' AND sent_at + INTERVAL 3 SECOND < $cutoff",
            at,
        )
        con.execute(
            "INSERT INTO delivery_events SELECT 'status:' || provider_id || ':delivered',"
            " action_id, provider_id, 'delivered', NULL, sent_at + INTERVAL 3 SECOND"
            " FROM h_delivered ORDER BY sent_at"
        )
        con.execute(INSERT_EVALUATIONS_SQL)
        record_ratings(con, f"({ALL_EVALUATIONS})")
        ratings_seen(con)  # the cases below are as these ratings left them
        con.execute(INBOUND_SQL, {"first_id": inbox_id})
        inbox_id = int(
            con.execute("SELECT coalesce(max(inbox_id), 0) FROM inbound_messages").fetchall()[0][0]
        )
        con.execute(
            "INSERT INTO opt_outs SELECT subscriber_id, channel, 'opt_out', received_at,"
            " channel || '_reply', dedupe_key FROM (SELECT * FROM h_r1_evals UNION ALL"
            " SELECT * FROM h_r2_evals UNION ALL SELECT * FROM h_r3_evals)"
            " WHERE intent = 'opt_out' ORDER BY received_at"
        )
        con.execute(INSERT_CASES_SQL)
        con.execute(CASE_EVENTS_SQL)
        _record_runs(con)
        con.execute("COMMIT")
        say(f"  history {first}..{last}: {time.monotonic() - began:.1f} s")
    return {
        table: int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        for table in HISTORY_TABLES
    }


HISTORY_TABLES = (
    "store_visits",
    "care_actions",
    "evaluations",
    "inbound_messages",
    "delivery_events",
    "opt_outs",
    "manager_cases",
    "case_events",
    "campaign_runs",
)


def _record_runs(con: duckdb.DuckDBPyConnection) -> None:
    """One campaign_runs row per planning run the chunk's actions came from."""
    con.execute("""
        INSERT INTO campaign_runs
        SELECT run_id, any_value(campaign_id), CAST(min(timezone('Asia/Shanghai', created_at))
               AS DATE), any_value(round), NULL, min(created_at),
               min(created_at) + INTERVAL 40 SECOND,
               json_object('queued', count(*) FILTER (WHERE status NOT IN
                   ('suppressed', 'held_out')), 'held_out', count(*) FILTER (
                   WHERE status = 'held_out'))
        FROM (SELECT * FROM h_r1 UNION ALL SELECT * FROM h_r2)
        GROUP BY run_id ORDER BY min(created_at)
        ON CONFLICT DO NOTHING""")


class _Timed:
    """A connection whose statements say how long they took (``profile=True``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, execute: Callable[..., object]) -> None:
        self._con, self.execute = con, execute

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)
