-- The retention lift's units, a settled business day at a time (insights/first_care.py): each
-- customer's first care of the day per campaign (round 1, held out or planned for contact,
-- never suppressed), the business zone it is dated in, and a day of the same customer's care
-- by that campaign before it: in the same month when there was one, else the last before
-- the month (NULL for the first ever). A customer's first care in a window that starts on a
-- month's first day is then their row in the window whose previous care is before the
-- window: a filter on the window's rows, where grouping 11 months of the outbox cost half a
-- report at a year. Written a month at a time, in order, by the report, for days no queued
-- action can still change; frozen.
CREATE TABLE care_firsts (
    zone          VARCHAR NOT NULL,
    cared_on      DATE NOT NULL,
    campaign_id   VARCHAR NOT NULL,
    subscriber_id VARCHAR NOT NULL,
    unit          UHUGEINT NOT NULL,  -- md5_number(campaign_id || '|' || subscriber_id)
    held_out      BOOLEAN NOT NULL,
    previous      DATE
);

-- How far each zone's days are stored: every business day up to ``through``.
CREATE TABLE care_firsts_stored (
    zone    VARCHAR PRIMARY KEY,
    through DATE NOT NULL
);
