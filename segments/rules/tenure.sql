-- Join anniversary on the as-of date (Feb 29 joins count on Feb 28 in non-leap years) where the
-- completed years are a milestone: one of $milestones, or a multiple of $milestone_every.
SELECT
    p.subscriber_id,
    'tenure-' || a.years AS occasion,
    a.years AS tenure_years
FROM subscriber_profile p
JOIN anniversaries_on($as_of::DATE) a ON p.joined_on = a.day
WHERE a.years >= 1
  AND (list_contains($milestones, a.years)
       OR ($milestone_every > 0 AND a.years % $milestone_every = 0))
