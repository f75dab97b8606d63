-- The inbound items and delivery events collect keeps are logs: written once, never looked
-- up by key. Their unique keys spanned the whole history, and DuckDB keeps a unique key in
-- an index that each collect loaded from disk as the day's random keys touched it and wrote
-- out whole when it checkpointed: with 90 days at 10 million subscribers (12 and 10 million
-- keys), that cost grew with the history. Collect now finds a repeat among the items that
-- arrived around the same time (feedback.ingest.land); the inbox refuses a repeat while it
-- holds the first, and holds every item for its retention.
CREATE TABLE inbound_messages_log (
    dedupe_key    VARCHAR NOT NULL,              -- kind:MessageSid, CallSid, sg_event_id, ...
    inbox_id      BIGINT NOT NULL,
    kind          VARCHAR NOT NULL,              -- sms | ivr | email_rating | status | ...
    received_at   TIMESTAMPTZ NOT NULL,
    payload       JSON NOT NULL,
    ingested_at   TIMESTAMPTZ NOT NULL
);
INSERT INTO inbound_messages_log SELECT * FROM inbound_messages;
DROP TABLE inbound_messages;
ALTER TABLE inbound_messages_log RENAME TO inbound_messages;

CREATE TABLE delivery_events_log (
    event_key     VARCHAR NOT NULL,              -- status:<the inbox item's key>
    action_id     VARCHAR,
    provider_id   VARCHAR,
    status        VARCHAR NOT NULL,
    error_code    VARCHAR,
    occurred_at   TIMESTAMPTZ NOT NULL
);
INSERT INTO delivery_events_log SELECT * FROM delivery_events;
DROP TABLE delivery_events;
ALTER TABLE delivery_events_log RENAME TO delivery_events;
