-- The inbox, the service's replay guard and clarification memory, and the managers' boards.
-- IF NOT EXISTS: inbox files made before the migrations already hold these tables.
CREATE TABLE IF NOT EXISTS inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    dedupe_key  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    payload     TEXT NOT NULL,
    UNIQUE (kind, dedupe_key)
);
-- SendGrid events name their care action (a custom arg): reconciliation looks them up by it.
CREATE INDEX IF NOT EXISTS inbox_event_action ON inbox
    (json_extract(payload, '$.action_id')) WHERE kind = 'status';

CREATE TABLE IF NOT EXISTS seen_signatures (
    signature TEXT PRIMARY KEY,
    sid       TEXT NOT NULL,
    seen_at   REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS clarified (sender TEXT PRIMARY KEY, at TEXT);

CREATE TABLE IF NOT EXISTS board_stores (
    store_id     TEXT PRIMARY KEY,
    data         TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS board_cases (
    case_id  TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS board_cases_store ON board_cases (store_id)
