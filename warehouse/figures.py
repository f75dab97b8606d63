"""Figures more than one surface shows, each defined once, as SQL over the warehouse.

The report (insights/), the managers' page and digests (cases/) and the demo all count these;
they sit below both so that the console, the report, the monthly report, the store lists, the
page and the mails cannot drift apart (the demo once showed opt-outs 53 and 56, SLA compliance
80.0% and 62.0%, and a list's "open" section full of resolved cases).
"""

from __future__ import annotations

# A case on its manager's to-do list; every other status is closed. cases/machine.py builds its
# states' ACTIVE from this, so the state machine, the page, the digests and the CSV lists agree.
ACTIVE_STATUSES = ("open", "contacted", "unresolved")
ACTIVE_SQL = "(m.status IN ('open', 'contacted', 'unresolved'))"

# A case the lists show: every active one, and the closed ones whose last change is less than
# $shown days before $now (the page's board, the morning mail and the store CSVs read the same
# rows, with $shown = LISTED_SHOWN_DAYS).
LISTED_SHOWN_DAYS = 30
LISTED_SQL = (
    f"({ACTIVE_SQL} OR coalesce(m.closed_at, m.updated_at, m.opened_at) >= $now - to_days($shown))"
)

# A store manager's list of cases, as the morning mail attaches it (CSV and Excel) and the
# report writes it (reports/store_lists/): the same columns, rows and order in both. The
# listed cases ($now, $shown), the ones to do first, escalated first, then the lowest score
# and the oldest. Times in the store's zone, as text: the lists are read in spreadsheets.
TO_DO, CLOSED = "to do", "closed"  # a list's sections, as on the page
CASE_LIST_SQL = f"""
SELECT CASE WHEN {ACTIVE_SQL} THEN '{TO_DO}' ELSE '{CLOSED}' END AS section,
       m.store_id, st.name AS store_name, st.manager_name, st.manager_email,
       m.subscriber_id, s.name AS customer_name, s.phone, s.email, s.locale,
       m.campaign_id, m.score, m.comment,
       strftime(timezone(st.timezone, m.opened_at), '%Y-%m-%d %H:%M') AS opened_local,
       st.timezone AS store_timezone, m.status,
       strftime(timezone(st.timezone, m.escalated_at), '%Y-%m-%d %H:%M') AS escalated_local,
       a.channel AS second_round_channel, a.status AS second_round_status,
       -- the second round's rating (1-5): the column the warehouse names recovered_score
       m.recovered_score AS second_round_score
FROM manager_cases m
JOIN stores st USING (store_id)
JOIN subscribers s USING (subscriber_id)
-- A second round is care for the case's rating (opened with parent_evaluation_id set to it,
-- cases.second_round): the rest of the outbox, every first round of a year, is not hashed.
LEFT JOIN (SELECT action_id, channel, status FROM care_actions
           WHERE parent_evaluation_id IS NOT NULL) a ON a.action_id = m.second_round_action_id
WHERE {LISTED_SQL}
ORDER BY m.store_id, section = '{CLOSED}', m.escalated_at IS NULL, m.score, m.opened_at,
    m.evaluation_id
"""

# SLA compliance: a case contacted within $sla hours of its opening, among the cases whose SLA
# is due (contacted, or $sla hours passed by $now). Cases are dated by when they opened.
IN_SLA = "(m.contacted_at <= m.opened_at + to_hours($sla))"
SLA_DUE = "(m.contacted_at IS NOT NULL OR m.opened_at + to_hours($sla) <= $now)"

# An opt-out this soon after a message is put down to that message: the report's campaign
# table and the monthly KPIs' opt-out rate use the same days.
OPT_OUT_DAYS = 7
# One opt-out is one 'opt_out' row of opt_outs, whatever its source (a reply, an unsubscribe
# link, a provider's refusal). It is put down to the campaign and round of the latest message
# sent to that customer on that channel at or before it, when that message is less than
# OPT_OUT_DAYS old (NULL when none was): the report's campaign table, its by-channel section
# and every total are counts of these rows. Only the messages sent since OPT_OUT_DAYS before
# $lo are read ({where} keeps the opt-outs from $lo on): an older latest message is not
# theirs anyway, and its customers' whole history of sends was 1.1 s of a report at a year.
OPT_OUT_EVENTS_SQL = f"""
WITH o AS (SELECT * FROM opt_outs WHERE event = 'opt_out' AND {{where}}),
latest AS (
    SELECT o.subscriber_id, o.channel, o.occurred_at, o.source, a.action_id, a.campaign_id,
        a.round, a.sent_at > o.occurred_at - INTERVAL {OPT_OUT_DAYS} DAY AS recent
    FROM o
    ASOF LEFT JOIN (
        -- their customers' messages only: the join sorts what it is given, not the outbox
        SELECT subscriber_id, channel, sent_at, action_id, campaign_id, round
        FROM care_actions
        WHERE sent_at >= $lo - INTERVAL {OPT_OUT_DAYS} DAY
          AND subscriber_id IN (SELECT subscriber_id FROM o)
    ) a ON a.subscriber_id = o.subscriber_id AND a.channel = o.channel
       AND a.sent_at <= o.occurred_at
)
SELECT subscriber_id, channel, occurred_at, source,
    CASE WHEN recent THEN action_id END AS action_id,
    CASE WHEN recent THEN campaign_id END AS campaign_id,
    CASE WHEN recent THEN round END AS round
FROM latest
"""  # {{where}}: which opt-outs, on the opt_outs row (its columns unqualified), from $lo on

# A satisfied rating: CSAT is the share of ratings that are 4-5 (on r, an action_ratings row).
SATISFIED_SQL = "(r.score >= 4)"
