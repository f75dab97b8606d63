-- The careloop warehouse, version 1.
-- Timestamps are TIMESTAMPTZ (stored in UTC); dates are the subscriber's calendar dates.

CREATE TABLE stores (
    store_id      VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    city          VARCHAR NOT NULL,
    region        VARCHAR,
    timezone      VARCHAR NOT NULL,
    manager_name  VARCHAR NOT NULL,
    manager_email VARCHAR NOT NULL
);

CREATE TABLE subscribers (
    subscriber_id VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    phone         VARCHAR,            -- E.164
    email         VARCHAR,
    birthday      DATE,
    joined_on     DATE NOT NULL,
    tier          VARCHAR NOT NULL,
    home_store_id VARCHAR,
    timezone      VARCHAR NOT NULL,   -- IANA name
    locale        VARCHAR NOT NULL,   -- zh-CN | en
    sms_consent   BOOLEAN NOT NULL,
    email_consent BOOLEAN NOT NULL,
    voice_consent BOOLEAN NOT NULL
);

CREATE TABLE store_visits (
    visit_id      VARCHAR PRIMARY KEY,
    subscriber_id VARCHAR NOT NULL,
    store_id      VARCHAR NOT NULL,
    visited_at    TIMESTAMPTZ NOT NULL,
    service_type  VARCHAR NOT NULL
);

CREATE TABLE campaigns (
    campaign_id   VARCHAR PRIMARY KEY,
    segment       VARCHAR NOT NULL,
    definition    JSON NOT NULL,
    checksum      VARCHAR NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE campaign_runs (
    run_id        VARCHAR PRIMARY KEY,
    campaign_id   VARCHAR NOT NULL,
    as_of         DATE NOT NULL,
    round         INTEGER NOT NULL,
    flow_run_id   VARCHAR,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    figures       JSON
);

-- The outbox and the contact archive in one: every planned contact, sent or suppressed, stays here.
CREATE TABLE care_actions (
    action_id          VARCHAR PRIMARY KEY,
    idempotency_key    VARCHAR NOT NULL UNIQUE,  -- campaign|subscriber|occasion|round
    run_id             VARCHAR NOT NULL,
    campaign_id        VARCHAR NOT NULL,
    subscriber_id      VARCHAR NOT NULL,
    occasion           VARCHAR NOT NULL,
    round              INTEGER NOT NULL,
    parent_evaluation_id VARCHAR,                -- round 2: the dissatisfied evaluation it answers
    store_id           VARCHAR,                  -- whose manager hears about a complaint
    tier               VARCHAR NOT NULL,
    locale             VARCHAR NOT NULL,
    channel            VARCHAR,                  -- sms | email | voice; NULL when unreachable
    recipient          VARCHAR,
    offer_code         VARCHAR,
    subject            VARCHAR,
    body               VARCHAR,
    survey             BOOLEAN NOT NULL,
    status             VARCHAR NOT NULL,         -- suppressed|held_out|queued|sending|sent|delivered|undelivered|failed|bounced
    suppression_reason VARCHAR,                  -- opted_out|no_consent|no_contact|capped|holdout
    scheduled_at       TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    claimed_at         TIMESTAMPTZ,
    sent_at            TIMESTAMPTZ,
    attempts           INTEGER NOT NULL DEFAULT 0,
    provider_id        VARCHAR,
    error_code         VARCHAR,
    error              VARCHAR,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE delivery_events (
    event_key     VARCHAR PRIMARY KEY,           -- provider event id, deduplicated
    action_id     VARCHAR,
    provider_id   VARCHAR,
    status        VARCHAR NOT NULL,
    error_code    VARCHAR,
    occurred_at   TIMESTAMPTZ NOT NULL
);

-- Every inbound item drained from the inbox, kept raw: nothing that was acknowledged is lost.
CREATE TABLE inbound_messages (
    dedupe_key    VARCHAR PRIMARY KEY,           -- MessageSid, CallSid, sg_event_id, token id
    inbox_id      BIGINT NOT NULL,
    kind          VARCHAR NOT NULL,              -- sms | ivr | email_rating | status
    received_at   TIMESTAMPTZ NOT NULL,
    payload       JSON NOT NULL,
    ingested_at   TIMESTAMPTZ NOT NULL
);

-- Replies, parsed and attributed. score is NULL when the reply is not a rating.
CREATE TABLE evaluations (
    evaluation_id VARCHAR PRIMARY KEY,
    dedupe_key    VARCHAR NOT NULL UNIQUE,
    action_id     VARCHAR,                       -- NULL when it answers no open survey
    subscriber_id VARCHAR,                       -- NULL when the sender is unknown
    campaign_id   VARCHAR,
    round         INTEGER,
    store_id      VARCHAR,
    channel       VARCHAR NOT NULL,
    sender        VARCHAR,
    intent        VARCHAR NOT NULL,              -- rating|opt_out|opt_in|help|unknown
    score         INTEGER CHECK (score BETWEEN 1 AND 5),
    comment       VARCHAR,
    attribution   VARCHAR NOT NULL,              -- matched|late|no_open_survey|unknown_sender
    received_at   TIMESTAMPTZ NOT NULL
);

-- Consent changes as an append-only log; the latest event per subscriber and channel wins.
CREATE TABLE opt_outs (
    subscriber_id VARCHAR NOT NULL,
    channel       VARCHAR NOT NULL,
    event         VARCHAR NOT NULL CHECK (event IN ('opt_out', 'opt_in')),
    occurred_at   TIMESTAMPTZ NOT NULL,
    source        VARCHAR NOT NULL,
    evidence_key  VARCHAR NOT NULL,
    PRIMARY KEY (evidence_key, channel)
);

CREATE VIEW active_opt_outs AS
SELECT subscriber_id, channel, occurred_at
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY subscriber_id, channel ORDER BY occurred_at DESC, event DESC
    ) AS rn
    FROM opt_outs
)
WHERE rn = 1 AND event = 'opt_out';

-- The store managers' work lists: one case per dissatisfied evaluation.
CREATE TABLE manager_cases (
    evaluation_id          VARCHAR PRIMARY KEY,
    store_id               VARCHAR NOT NULL,
    subscriber_id          VARCHAR NOT NULL,
    campaign_id            VARCHAR NOT NULL,
    action_id              VARCHAR NOT NULL,
    score                  INTEGER NOT NULL,
    comment                VARCHAR,
    opened_at              TIMESTAMPTZ NOT NULL,
    second_round_action_id VARCHAR,
    recovered_score        INTEGER,
    status                 VARCHAR NOT NULL      -- open | recovered | unresolved
);

CREATE TABLE ingest_state (
    name  VARCHAR PRIMARY KEY,
    value BIGINT NOT NULL
);
