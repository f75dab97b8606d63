-- The order in which the case machine applied each event. An event collected late (a rating
-- given before a manager's change that was collected first) is applied after it, and its
-- from/to say what it did then: a case's history reads in this order, so each step starts
-- where the one before it ended. Existing rows are numbered in the order they were stored.
CREATE SEQUENCE case_event_order;
ALTER TABLE case_events ADD COLUMN applied BIGINT DEFAULT nextval('case_event_order');
