-- When a load's rows were replaced wholesale (`careloop demo-data --replace-loaded` puts a
-- synthetic population in their place): NULL while what it loaded may still be there.
-- demo-data refuses to replace loaded data unasked, and asks only of loads not replaced yet.
ALTER TABLE load_reports ADD COLUMN replaced_at TIMESTAMPTZ;
