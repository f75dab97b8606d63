-- anniversaries_on(as_of): every calendar day of the last 150 years whose anniversary falls on
-- as_of, with the completed years. A day's anniversary in a year is the same month and day,
-- except Feb 29, which falls on Feb 28 in years that are not leap years (DuckDB's DATE +
-- to_years clamps it so). Rules join on it instead of doing date arithmetic per subscriber:
-- about 55,000 calendar days instead of millions of rows.
CREATE MACRO anniversaries_on(as_of) AS TABLE
SELECT CAST(range AS DATE) AS day, year(as_of) - year(CAST(range AS DATE)) AS years
FROM range(CAST(as_of - INTERVAL 150 YEAR AS DATE), CAST(as_of AS DATE) + 1, INTERVAL 1 DAY)
WHERE CAST(CAST(range AS DATE) + to_years(year(as_of) - year(CAST(range AS DATE))) AS DATE)
      = CAST(as_of AS DATE);
