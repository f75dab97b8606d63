-- Message variants (campaigns/variants.py). Each first-round action a variant test planned for
-- contact carries the variant the bandit assigned it; held-out, capped and unreachable rows keep
-- NULL, so a report can split every figure by variant and the bandit never reads the holdout.
ALTER TABLE care_actions ADD COLUMN variant VARCHAR;

-- A test's winner, recorded at the plan that first met its stopping rule and kept from then on:
-- later plans send the winner (and the monitoring share), reports say when it was declared.
CREATE TABLE variant_winners (
    campaign_id VARCHAR PRIMARY KEY,
    variant     VARCHAR NOT NULL,
    declared_on DATE NOT NULL,          -- the business date of the plan that declared it
    look        INTEGER NOT NULL,       -- that plan's number among the test's plans
    p_best      DOUBLE NOT NULL,
    outcomes    JSON NOT NULL,          -- each variant's outcomes and successes at that look
    declared_at TIMESTAMPTZ NOT NULL
);
