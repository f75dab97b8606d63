-- Birthday on the as-of date; Feb 29 births are members on Feb 28 in non-leap years (the
-- anniversaries_on macro encodes that rule once, for every rule that needs it).
SELECT
    p.subscriber_id,
    'birthday-' || year($as_of::DATE) AS occasion,
    a.years AS age
FROM subscriber_profile p
JOIN anniversaries_on($as_of::DATE) a ON p.birthday = a.day
WHERE a.years >= 1
