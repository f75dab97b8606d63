-- The second round's status the board last showed: a case whose second round moved on
-- (sent, delivered, expired) within the settling days is sent to its board again.
ALTER TABLE manager_cases ADD COLUMN board_second_round VARCHAR;
