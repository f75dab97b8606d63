-- A name for this inbox, made once: the warehouse keeps collect's watermark per inbox, so a
-- new inbox (or a move from a SQLite file) is read from its start, not from another's id.
CREATE TABLE inbox_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO inbox_meta VALUES ('identity', replace(gen_random_uuid()::text, '-', ''))
