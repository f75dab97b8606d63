-- Closed months' KPI moments (insights/closed_months.py). The monthly report's twelve-month
-- trend re-read every unit of every KPI for twelve months on each report, so its cost grew with
-- the warehouse's history. A month's figures settle some weeks after it ends (late ratings and
-- re-ratings within the reply window, opt-outs within 7 days, cases contacted and recovered);
-- from then on it is closed: its moments are computed once, kept here, and every surface reads
-- them from here. Written lazily, the first time a report needs a closed month: the figures
-- depend on the business zone and the SLA and reply window in force, which this file cannot
-- know, so the rows are keyed by them (a change of settings computes its own closed months).
CREATE TABLE kpi_closed_months (
    month              VARCHAR NOT NULL,      -- YYYY-MM, in the business zone below
    zone               VARCHAR NOT NULL,
    sla_hours          INTEGER NOT NULL,
    reply_window_hours INTEGER NOT NULL,
    closed_at          TIMESTAMPTZ NOT NULL,  -- the report's now when the month was written
    PRIMARY KEY (month, zone, sla_hours, reply_window_hours)
);

-- Each closed month's moments per KPI, scope and key (key NULL overall): what kpi_moments
-- gives for it, so the month's mean, interval and tests are the same read from here.
CREATE TABLE kpi_month_moments (
    month              VARCHAR NOT NULL,
    zone               VARCHAR NOT NULL,
    sla_hours          INTEGER NOT NULL,
    reply_window_hours INTEGER NOT NULL,
    kpi                VARCHAR NOT NULL,
    scope              VARCHAR NOT NULL,
    key                VARCHAR,
    n                  BIGINT NOT NULL,
    total              DOUBLE NOT NULL,
    squares            DOUBLE NOT NULL
);
