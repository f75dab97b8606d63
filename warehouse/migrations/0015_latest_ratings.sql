-- Each care action's latest rating, kept as a table. action_ratings was a window over every
-- evaluation ever received, so every reader (the dissatisfied rule, collect's cases, the KPIs,
-- the report) paid for the whole history each time. Collect now writes this table in the
-- transaction that writes the evaluations (warehouse/ratings.py); this backfills it once, with
-- the same choice the view made: the latest in-window reply that is a rating, ties going to
-- the larger evaluation id. Rows in received order, so received_at's zone maps skip old ones.
CREATE TABLE latest_ratings (
    action_id     VARCHAR PRIMARY KEY,
    evaluation_id VARCHAR NOT NULL,
    subscriber_id VARCHAR,
    campaign_id   VARCHAR,
    round         INTEGER,
    store_id      VARCHAR,
    channel       VARCHAR NOT NULL,
    score         INTEGER,
    comment       VARCHAR,
    received_at   TIMESTAMPTZ NOT NULL
);

INSERT INTO latest_ratings
SELECT action_id, evaluation_id, subscriber_id, campaign_id, round, store_id, channel, score,
       comment, received_at
FROM evaluations
WHERE intent = 'rating' AND attribution = 'matched' AND action_id IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY action_id ORDER BY received_at DESC, evaluation_id DESC
) = 1
ORDER BY received_at;

-- The documented view keeps its columns and meaning; it no longer ranks anything.
CREATE OR REPLACE VIEW action_ratings AS
SELECT evaluation_id, action_id, subscriber_id, campaign_id, round, store_id, channel,
       score, comment, received_at
FROM latest_ratings;
