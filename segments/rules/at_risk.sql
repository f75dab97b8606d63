-- Customers the at_risk model scores above $threshold as likely to be dissatisfied, for
-- proactive care. Scores come from 'careloop model score --as-of DATE' (the latest trained
-- model); without them the rule fails with a message saying what to run.
SELECT subscriber_id, 'at-risk-' || strftime($as_of::DATE, '%Y-%m') AS occasion,
       round(probability, 3) AS risk
FROM model_scores
WHERE model = 'at_risk' AND as_of = $as_of::DATE AND probability >= $threshold
UNION ALL
SELECT error('no at_risk scores for ' || strftime($as_of::DATE, '%Y-%m-%d')
             || ': run careloop model train, then careloop model score --as-of '
             || strftime($as_of::DATE, '%Y-%m-%d')), NULL, NULL
WHERE NOT EXISTS (SELECT 1 FROM model_scores WHERE model = 'at_risk' AND as_of = $as_of::DATE)
