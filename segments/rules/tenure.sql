-- Join anniversary on the as-of date (Feb 29 joins count on Feb 28 in non-leap years) where the
-- completed years are a milestone: one of $milestones, or a multiple of $milestone_every.
WITH anniversaries AS (
    SELECT subscriber_id, joined_on, year($as_of::DATE) - year(joined_on) AS tenure_years
    FROM subscriber_profile
)
SELECT
    subscriber_id,
    'tenure-' || tenure_years AS occasion,
    tenure_years
FROM anniversaries
WHERE tenure_years >= 1
  AND CAST(joined_on + to_years(tenure_years) AS DATE) = $as_of::DATE
  AND (list_contains($milestones, tenure_years)
       OR ($milestone_every > 0 AND tenure_years % $milestone_every = 0))
