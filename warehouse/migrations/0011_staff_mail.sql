-- Mail to staff (managers' daily lists, escalations), one per key: a rerun sends nothing twice.
CREATE TABLE staff_mail_log (
    key         VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,      -- digest | escalation
    store_id    VARCHAR,
    recipient   VARCHAR NOT NULL,
    cases       INTEGER NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL,
    provider_id VARCHAR
);

-- How many times a resolved case has asked its customer again (capped by
-- CARELOOP_CASE_FOLLOW_UPS): the answer closes the case or reopens it.
ALTER TABLE manager_cases ADD COLUMN follow_ups INTEGER DEFAULT 0;
