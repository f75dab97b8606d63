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
