-- send_time: learned's priors, a settled day at a time: the learnable sends of a UTC day by
-- the customer's home store ('' for none) and local hour, and how many were answered within
-- SETTLE_DAYS of the day's start (campaigns/send_time.py). A plan adds the days that settled
-- since the last one and reads only the unsettled days' sends, so its cost no longer grows
-- with the year of history it learns from. The rows of a day are frozen once written.
CREATE TABLE send_hour_days (
    day      DATE NOT NULL,
    store_id VARCHAR NOT NULL,
    hour     INTEGER NOT NULL,
    n        BIGINT NOT NULL,
    y        BIGINT NOT NULL,
    PRIMARY KEY (day, store_id, hour)
);

-- The days stored, with their count of sends: a day without learnable sends has no row in
-- send_hour_days but is stored all the same (else every plan would read it again).
CREATE TABLE send_hour_days_stored (
    day   DATE PRIMARY KEY,
    sends BIGINT NOT NULL
);
