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

# SLA compliance: a case contacted within $sla hours of its opening, among the cases whose SLA
# is due (contacted, or $sla hours passed by $now). Cases are dated by when they opened.
IN_SLA = "(m.contacted_at <= m.opened_at + to_hours($sla))"
SLA_DUE = "(m.contacted_at IS NOT NULL OR m.opened_at + to_hours($sla) <= $now)"

# One opt-out is one 'opt_out' row of opt_outs, whatever its source (a reply, an unsubscribe
# link, a provider's refusal). It is put down to the campaign and round of the latest message
# sent to that customer on that channel at or before it (NULL when none was): the report's
# campaign table, its by-channel section and every total are counts of these rows.
OPT_OUT_EVENTS_SQL = """
WITH o AS (SELECT * FROM opt_outs WHERE event = 'opt_out' AND {where})
SELECT o.subscriber_id, o.channel, o.occurred_at, o.source, a.action_id, a.campaign_id, a.round
FROM o
ASOF LEFT JOIN (
    -- their customers' messages only: the join sorts what it is given, not the whole outbox
    SELECT subscriber_id, channel, sent_at, action_id, campaign_id, round
    FROM care_actions WHERE sent_at IS NOT NULL AND subscriber_id IN (SELECT subscriber_id FROM o)
) a ON a.subscriber_id = o.subscriber_id AND a.channel = o.channel AND a.sent_at <= o.occurred_at
"""  # {where}: which opt-outs, on the opt_outs row (its columns unqualified)

# A satisfied rating: CSAT is the share of ratings that are 4-5 (on r, an action_ratings row).
SATISFIED_SQL = "(r.score >= 4)"
