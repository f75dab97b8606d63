-- Store visits in the look-back window before the end of the as-of day that have not yet had an
-- evaluation request: one request per subscriber per store per local day, asked for the last
-- visit of that day, $delay_minutes after it.
WITH recent AS (
    SELECT
        subscriber_id, store_id, visit_local_date, visit_id, visited_at, service_type,
        'visit-' || store_id || '-' || strftime(visit_local_date, '%Y-%m-%d') AS occasion
    FROM visits
    WHERE visited_at >= $as_of_end - to_hours($lookback_hours)
      AND visited_at < $as_of_end
)
SELECT
    subscriber_id,
    occasion,
    store_id,
    arg_max(visit_id, visited_at) AS visit_id,
    arg_max(service_type, visited_at) AS service_type,
    max(visited_at) AS occasion_at,
    max(visited_at) + to_minutes($delay_minutes) AS due_at
FROM recent r
WHERE NOT EXISTS (
    -- The recent occasions only, said again as a list: DuckDB otherwise builds its anti-join
    -- on every survey ever requested (44 million at a year: 5.8 s, 0.9 s with the list).
    SELECT 1 FROM survey_requests q
    WHERE q.subscriber_id = r.subscriber_id AND q.occasion = r.occasion
      AND q.occasion IN (SELECT occasion FROM recent)
)
GROUP BY subscriber_id, occasion, store_id
