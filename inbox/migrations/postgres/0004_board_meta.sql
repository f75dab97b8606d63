-- What the boards were last published with (the shape: the SLA, how long closed cases stay,
-- the case document's version). A publish with another shape replaces every board; one with
-- the same sends only the cases that changed.
CREATE TABLE board_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
