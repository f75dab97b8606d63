-- Store managers work their cases. A case moves open -> contacted -> resolved, or the
-- customer's ratings make it recovered (4-5) or unresolved (a second round rated 1-2). Each
-- change is an event, so a case's history reads back. A case not contacted within the SLA
-- is escalated to its store's regional contact, once.

CREATE TABLE regions (
    region        VARCHAR PRIMARY KEY,
    contact_name  VARCHAR NOT NULL,
    contact_email VARCHAR NOT NULL
);

-- The language the manager's page and emails speak; NULL: by the store's timezone.
ALTER TABLE stores ADD COLUMN manager_locale VARCHAR;

ALTER TABLE manager_cases ADD COLUMN contacted_at TIMESTAMPTZ;
ALTER TABLE manager_cases ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE manager_cases ADD COLUMN escalated_at TIMESTAMPTZ;
ALTER TABLE manager_cases ADD COLUMN updated_at TIMESTAMPTZ;

CREATE TABLE case_events (
    event_key     VARCHAR PRIMARY KEY,   -- the inbox item it came from, or system|case|status
    evaluation_id VARCHAR NOT NULL,      -- the case
    occurred_at   TIMESTAMPTZ NOT NULL,
    actor         VARCHAR NOT NULL,      -- manager:STORE, customer, system
    from_status   VARCHAR,
    to_status     VARCHAR NOT NULL,
    note          VARCHAR,
    accepted      BOOLEAN NOT NULL       -- false: a change the case's state did not allow
);
