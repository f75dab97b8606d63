-- The inbox on PostgreSQL: the same tables as the SQLite inbox, for several service instances.
CREATE TABLE inbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    payload     TEXT NOT NULL,  -- the JSON as received, byte for byte
    UNIQUE (kind, dedupe_key)
);
-- json, not jsonb: jsonb refuses \u0000, and a status event must never be refused for it.
CREATE INDEX inbox_event_action ON inbox ((payload::json ->> 'action_id')) WHERE kind = 'status';

CREATE TABLE seen_signatures (
    signature TEXT PRIMARY KEY,
    sid       TEXT NOT NULL,
    seen_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX seen_signatures_age ON seen_signatures (seen_at);

CREATE TABLE clarified (sender TEXT PRIMARY KEY, at TEXT);

CREATE TABLE board_stores (
    store_id     TEXT PRIMARY KEY,
    data         TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE TABLE board_cases (
    case_id  TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX board_cases_store ON board_cases (store_id)
