-- The send window travels with each care action, so dispatch can enforce it at send time:
-- an SMS or call due outside the customer's local window waits for the next one.
ALTER TABLE care_actions ADD COLUMN timezone VARCHAR;
ALTER TABLE care_actions ADD COLUMN window_start TIME;   -- NULL: any time (email)
ALTER TABLE care_actions ADD COLUMN window_end TIME;
ALTER TABLE care_actions ADD COLUMN segments INTEGER;    -- SMS segments, for throughput
