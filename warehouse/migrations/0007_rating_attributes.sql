-- Per-attribute ratings from the email rating page (wait_time, staff_attitude,
-- problem_solved, each 1-5), kept with the evaluation for key-driver analysis.
ALTER TABLE evaluations ADD COLUMN attributes JSON;
