-- send_time: learned's customers' own cells, a settled day at a time: each learnable send of
-- a UTC day with its customer (a stable hash of the id), home store, local hour, and whether
-- it was rated within SETTLE_DAYS of the day's start (campaigns/send_time.py). A plan read
-- its members' year of sends from the outbox, a scan of every send of the year that grew
-- with the history (4 to 8 s a plan at 10 million subscribers with a year); this narrow log,
-- in day order, answers it from numbers. send_hour_days is now summed from these rows.
CREATE TABLE send_hour_sends (
    day             DATE NOT NULL,
    store_id        VARCHAR NOT NULL,   -- the customer's home store when the day was stored
    subscriber_hash UBIGINT NOT NULL,   -- md5_number_lower(subscriber_id)
    hour            INTEGER NOT NULL,
    answered        BOOLEAN NOT NULL
);
-- The days stored so far have no sends here: they are stored again, both ways, by the next
-- learning (one read of the lookback's sends, as on the first day).
DELETE FROM send_hour_days;
DELETE FROM send_hour_days_stored;
