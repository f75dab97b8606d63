-- The order in which actions got their latest rating: collect moves the cases by the ratings
-- that came since its last pass (ingest_state 'case_ratings_seen'), not by every rating of
-- every case ever (cases/lifecycle.py). Existing ratings are numbered, and all of them count
-- as seen: the collect that took each in moved its case in the same run.
CREATE SEQUENCE rating_order;
ALTER TABLE latest_ratings ADD COLUMN rated BIGINT DEFAULT nextval('rating_order');
INSERT OR REPLACE INTO ingest_state
SELECT 'case_ratings_seen', coalesce(max(rated), 0) FROM latest_ratings;
