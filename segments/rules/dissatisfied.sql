-- Customers whose latest first-round rating in the window scored 1-2 and who have not yet had a
-- second round for it.
WITH latest AS (
    SELECT *, row_number() OVER (PARTITION BY subscriber_id ORDER BY received_at DESC) AS rn
    FROM action_ratings
    WHERE received_at >= $as_of_end - to_days($window_days)
      AND received_at < $as_of_end
)
SELECT
    subscriber_id,
    'complaint-' || evaluation_id AS occasion,
    evaluation_id,
    campaign_id AS source_campaign,
    action_id AS source_action_id,
    store_id,
    score,
    comment,
    received_at AS occasion_at,
    received_at + to_minutes($delay_minutes) AS due_at
FROM latest l
WHERE rn = 1 AND score <= 2 AND round = 1
  AND NOT EXISTS (
      -- Care for a rating is created after the rating came, so only the outbox's newer part
      -- can hold it (created_at's zone maps skip the rest).
      SELECT 1 FROM care_actions c WHERE c.parent_evaluation_id = l.evaluation_id
        AND c.created_at >= $as_of_end - to_days($window_days)
  )
