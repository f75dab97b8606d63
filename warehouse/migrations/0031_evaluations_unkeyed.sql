-- The evaluations are a log too (as the inbound items, migration 0027): written once, read
-- by time. Their two unique keys, the id and the dedupe key, were both hashes of provider
-- ids: DuckDB keeps each in an index over every evaluation ever kept, and a day's random
-- keys dirtied pages all over both, which each collect wrote out when it closed (at 10
-- million subscribers with a year, 4.5 s of its checkpoint, against 0.4 s on an empty
-- history). Collect now finds a repeat among the evaluations that arrived within
-- feedback.ingest.EVALUATION_REPEAT_HORIZON of it: a repeat of a reply is a provider's
-- retry or a rating form posted again while its link is valid, never later. The id stays
-- the dedupe key's hash, so one key still makes one id. Rows go in received order, so
-- received_at's zone maps skip the old ones. DuckDB cannot drop a constraint: the table is
-- rebuilt.
CREATE TABLE evaluations_log (
    evaluation_id VARCHAR NOT NULL,
    dedupe_key    VARCHAR NOT NULL,
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
    received_at   TIMESTAMPTZ NOT NULL,
    attributes    JSON
);
INSERT INTO evaluations_log BY NAME SELECT * FROM evaluations ORDER BY received_at;
DROP TABLE evaluations;
ALTER TABLE evaluations_log RENAME TO evaluations;
