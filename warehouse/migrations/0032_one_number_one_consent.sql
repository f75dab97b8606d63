-- One number, one consent. A STOP (or the IVR's opt-out key, or a provider's word that the
-- recipient opted out) revokes consent for automated texts and calls to that number, whoever
-- else's record holds it: two subscribers sharing a phone (a duplicate record, a family's
-- contact number) both stopped, where only the one the reply was attributed to used to. The
-- revocation is the number's (the FCC's rule; 退订 likewise), so the number is kept here as
-- the reply came from it (or as we called it), beside the subscriber's event in opt_outs.
-- START from the number gives it back: the number's latest event decides.
CREATE TABLE phone_consent (
    phone        VARCHAR NOT NULL,
    event        VARCHAR NOT NULL CHECK (event IN ('opt_out', 'opt_in')),
    occurred_at  TIMESTAMPTZ NOT NULL,
    evidence_key VARCHAR PRIMARY KEY
);

-- The events kept so far, on the number their subscriber holds now.
INSERT INTO phone_consent
SELECT s.phone, o.event, o.occurred_at, o.evidence_key
FROM opt_outs o JOIN subscribers s USING (subscriber_id)
WHERE o.channel IN ('sms', 'voice') AND s.phone IS NOT NULL
ON CONFLICT DO NOTHING;

CREATE OR REPLACE VIEW active_phone_opt_outs AS
SELECT phone, occurred_at FROM (
    SELECT *, row_number() OVER (
        PARTITION BY phone ORDER BY occurred_at DESC, event DESC
    ) AS rn
    FROM phone_consent
)
WHERE rn = 1 AND event = 'opt_out';
