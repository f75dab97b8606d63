-- Customers whose latest first-round rating in the window scored 1-2 and whose survey has not
-- yet had a second round. Only first-round ratings are ranked: a second round or a follow-up
-- rated minutes later must not hide a fresh complaint. One second round per survey, whatever
-- else the customer replied to it.
WITH latest AS (
    SELECT *, row_number() OVER (PARTITION BY subscriber_id ORDER BY received_at DESC) AS rn
    FROM action_ratings
    WHERE round = 1
      AND received_at >= $as_of_end - to_days($window_days)
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
WHERE rn = 1 AND score <= 2
  AND NOT EXISTS (
      -- Replies to one survey all come within its reply window plus the 30 days a late reply
      -- still counts (feedback.ingest.LATE_LOOKBACK), and care for a reply is created after
      -- it: so only the newer part of the outbox and of the evaluations can hold an earlier
      -- round for this survey (their time columns' zone maps skip the rest).
      SELECT 1 FROM care_actions c JOIN evaluations e ON e.evaluation_id = c.parent_evaluation_id
      WHERE e.action_id = l.action_id
        AND c.created_at >= $as_of_end - to_days($window_days + 40)
        AND e.received_at >= $as_of_end - to_days($window_days + 40)
  )
