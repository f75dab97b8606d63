-- A name for this inbox, made once: the warehouse keeps collect's watermark per inbox, so a
-- new inbox file (or a move to PostgreSQL) is read from its start, not from another's id.
-- Idempotent, like every SQLite inbox migration: two processes may apply it at once.
CREATE TABLE IF NOT EXISTS inbox_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO inbox_meta VALUES ('identity', lower(hex(randomblob(16))))
