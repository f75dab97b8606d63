-- Data loads: every validation kept as a report, and rows refused under --quarantine kept
-- with their reasons instead of being dropped.

CREATE TABLE load_reports (
    load_id     VARCHAR PRIMARY KEY,
    entity      VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    mode        VARCHAR NOT NULL,        -- refuse | quarantine
    rows_read   INTEGER NOT NULL,
    rows_loaded INTEGER NOT NULL,
    rows_bad    INTEGER NOT NULL,
    success     BOOLEAN NOT NULL,
    report      JSON NOT NULL,
    loaded_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE quarantine (
    load_id        VARCHAR NOT NULL,
    entity         VARCHAR NOT NULL,
    line           INTEGER NOT NULL,
    record         JSON NOT NULL,
    reasons        VARCHAR[] NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (load_id, line)
);
