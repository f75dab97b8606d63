-- The day a subscriber left the operator (NULL while they are a subscriber). Care is never
-- planned for someone who has left, and retention (still a subscriber N days after care,
-- against the held-out customers) is the outcome by which care's lift is measured.
ALTER TABLE subscribers ADD COLUMN left_on DATE;
