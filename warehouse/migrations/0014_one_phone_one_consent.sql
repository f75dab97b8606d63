-- One phone, one consent. A customer who texts STOP (or presses the IVR's opt-out key) has
-- revoked consent for automated calls and texts to that number alike (the US FCC's revocation
-- rule covers both), and START by text gives both back. Email consent stays its own.
-- The log keeps each event on the channel it came by; for the phone the latest event on either
-- of its channels decides, and an opt-out covers both. Every check that asks whether a channel
-- is opted out (planning, dispatch before each batch, follow-ups) reads this view.
CREATE OR REPLACE VIEW active_opt_outs AS
SELECT subscriber_id,
       unnest(CASE WHEN medium = 'phone' THEN ['sms', 'voice'] ELSE [channel] END) AS channel,
       occurred_at
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY subscriber_id, medium ORDER BY occurred_at DESC, event DESC
    ) AS rn
    FROM (
        SELECT *, CASE WHEN channel IN ('sms', 'voice') THEN 'phone' ELSE channel END AS medium
        FROM opt_outs
    )
)
WHERE rn = 1 AND event = 'opt_out';
