-- Store managers' sessions, kept here so that every service instance sees one end: the cookie
-- holds a random id, this table only its SHA-256 (a copy of the table signs nobody in). A
-- session ends at expires_at (unix seconds), set once at sign-in: use never moves it.
CREATE TABLE IF NOT EXISTS manager_sessions (
    id_hash    TEXT PRIMARY KEY,
    store_id   TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    locale     TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS manager_sessions_store ON manager_sessions (store_id);
CREATE INDEX IF NOT EXISTS manager_sessions_expiry ON manager_sessions (expires_at);
-- When a store last got a new manager (or had its sessions revoked): sign-in links issued
-- before that moment are refused.
CREATE TABLE IF NOT EXISTS manager_revocations (
    store_id   TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
)
