-- A case whose board copy may be out of date: set by every writer that changes what a
-- manager's board shows of it (the case machine, a new case, a reload of its customer's
-- details), cleared by the publish that sent it to the board. The publish then sends only
-- these (and the cases whose second round may still change) instead of every board whole.
-- Existing cases start stale: the first publish after this sends every board whole anyway.
ALTER TABLE manager_cases ADD COLUMN board_stale BOOLEAN DEFAULT true;
