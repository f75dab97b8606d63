-- The number (or address) a care action was sent from: an SMS reply belongs to the latest
-- survey sent to that customer from the number they replied to.
ALTER TABLE care_actions ADD COLUMN sender VARCHAR;
