-- When a case was last asked its follow-up: a resolved case is due for one when it has not
-- been asked since it was resolved (closed_at). Finding the due cases read the outbox for
-- every resolved case before (its round-3 actions since closed_at), so each collect cost
-- as much as the outbox and the backlog of resolved cases had grown. Backfilled from the
-- round-3 actions already queued.
ALTER TABLE manager_cases ADD COLUMN follow_up_asked_at TIMESTAMPTZ;
UPDATE manager_cases m SET follow_up_asked_at = f.asked_at
FROM (
    SELECT parent_evaluation_id, max(created_at) AS asked_at FROM care_actions
    WHERE round = 3 AND parent_evaluation_id IS NOT NULL GROUP BY ALL
) f
WHERE f.parent_evaluation_id = m.evaluation_id;
