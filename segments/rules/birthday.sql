-- Birthday on the as-of date. DuckDB's DATE + to_years(n) clamps Feb 29 to Feb 28 in a
-- non-leap year, which is exactly when those born on Feb 29 celebrate.
SELECT
    subscriber_id,
    'birthday-' || year($as_of::DATE) AS occasion,
    year($as_of::DATE) - year(birthday) AS age
FROM subscriber_profile
WHERE birthday IS NOT NULL
  AND birthday < $as_of::DATE
  AND CAST(birthday + to_years(year($as_of::DATE) - year(birthday)) AS DATE) = $as_of::DATE
