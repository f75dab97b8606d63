-- The outbox keeps one unique key, its action id. The action id is the idempotency key's
-- hash ('ca_' || substr(md5(idempotency_key), 1, 24)), so a second unique index on the key
-- itself said nothing the first did not, and cost as much: DuckDB loads a unique index
-- from disk as a day's random keys touch it and writes it out whole at each checkpoint,
-- so every plan and its close paid for the whole history's keys twice over (at 10 million
-- subscribers with 90 days, 12.4 million keys each). Planning still drops the members whose
-- key is in the outbox already (campaigns.planning), which also covers ids made otherwise
-- (the demo's past surveys). DuckDB cannot drop a constraint: the table is rebuilt.
CREATE TABLE care_actions_rebuilt (
    action_id          VARCHAR PRIMARY KEY,
    idempotency_key    VARCHAR NOT NULL,         -- campaign|subscriber|occasion|round
    run_id             VARCHAR NOT NULL,
    campaign_id        VARCHAR NOT NULL,
    subscriber_id      VARCHAR NOT NULL,
    occasion           VARCHAR NOT NULL,
    round              INTEGER NOT NULL,
    parent_evaluation_id VARCHAR,
    store_id           VARCHAR,
    tier               VARCHAR NOT NULL,
    locale             VARCHAR NOT NULL,
    channel            VARCHAR,
    recipient          VARCHAR,
    offer_code         VARCHAR,
    subject            VARCHAR,
    body               VARCHAR,
    survey             BOOLEAN NOT NULL,
    status             VARCHAR NOT NULL,
    suppression_reason VARCHAR,
    scheduled_at       TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    claimed_at         TIMESTAMPTZ,
    sent_at            TIMESTAMPTZ,
    attempts           INTEGER NOT NULL DEFAULT 0,
    provider_id        VARCHAR,
    error_code         VARCHAR,
    error              VARCHAR,
    updated_at         TIMESTAMPTZ NOT NULL,
    timezone           VARCHAR,
    window_start       TIME,
    window_end         TIME,
    segments           INTEGER,
    sender             VARCHAR,
    expires_at         TIMESTAMPTZ,
    send_time_source   VARCHAR,
    variant            VARCHAR
);
INSERT INTO care_actions_rebuilt BY NAME SELECT * FROM care_actions;
DROP VIEW survey_requests;
DROP TABLE care_actions;
ALTER TABLE care_actions_rebuilt RENAME TO care_actions;
CREATE VIEW survey_requests AS
SELECT action_id, campaign_id, subscriber_id, occasion, round, store_id, channel, sent_at, status
FROM care_actions
WHERE survey AND status NOT IN ('suppressed', 'held_out');
