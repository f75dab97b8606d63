"""What care changes: cared-for customers against the held-out ones, on an outcome both
groups have (held-out customers get no survey, so CSAT cannot be it).

In the warehouse the outcome is retention: still a subscriber N days after the care was
planned. The comparison is by intention to treat: every member planned for contact counts as
treated, whether or not the message got through, as the holdout was drawn from the same members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from insights.exports import ExportError, bad_rows, numbers, read_export, require_columns
from insights.first_care import first_care_units
from insights.stats import Moments, compare, moments_of, sample_size, shown_p

GROUPS = ("treated", "holdout")


@dataclass(frozen=True)
class Lift:
    treated_mean: float
    holdout_mean: float
    lift: float  # treated minus holdout
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    n_treated: int
    n_holdout: int
    binary: bool
    detect: float  # the lift the sample size is for
    needed: int | None  # units (both groups) a campaign needs to detect ``detect``
    excluded: int = 0  # rows with an empty outcome

    def as_json(self) -> dict[str, Any]:
        return {
            "treated_mean": round(self.treated_mean, 6),
            "holdout_mean": round(self.holdout_mean, 6),
            "lift": round(self.lift, 6),
            "ci_low": round(self.ci_low, 6),
            "ci_high": round(self.ci_high, 6),
            "p_value": shown_p(self.p_value),
            "significant": self.significant,
            "n_treated": self.n_treated,
            "n_holdout": self.n_holdout,
            "sample_size": {"lift": round(self.detect, 6), "units": self.needed},
            "excluded_rows": self.excluded,
        }

    def verdict(self) -> str:
        pct = 100 if self.binary else 1
        unit = " points" if self.binary else ""
        low, high = self.ci_low * pct, self.ci_high * pct
        shown = f"{self.lift * pct:+.2f}{unit} (95% CI {low:+.2f} to {high:+.2f})"
        if self.significant:
            return f"{shown}: a real difference (p = {self.p_value:.3g})"
        return f"{shown}: not significant (p = {self.p_value:.2g}); it may be chance"


def measure(
    treated: np.ndarray, holdout: np.ndarray, *, alpha: float = 0.05, detect: float | None = None
) -> Lift:
    """The lift of ``treated`` over ``holdout`` (0/1 or numeric outcomes): Newcombe's interval
    for shares, Welch's t for averages, each with the p-value that agrees with it. An
    ExportError, in one line, for what cannot give a figure: a non-finite value or ``detect``,
    a group under 2 units, a numeric outcome with no spread in either group, a ``detect`` the
    outcome cannot show. ``needed`` is None only when the lift to size for is 0."""
    if len(treated) < 2 or len(holdout) < 2:
        raise ExportError(
            f"need at least 2 treated and 2 holdout units (have {len(treated)} and {len(holdout)})"
        )
    values = np.concatenate([treated, holdout])
    if not np.isfinite(values).all():
        raise ExportError("the outcome holds a value that is not a finite number")
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    spread = None if binary else float(np.std(values, ddof=1))
    return measure_moments(
        moments_of(treated), moments_of(holdout), binary=binary, spread=spread, alpha=alpha,
        detect=detect,
    )  # fmt: skip


def measure_moments(
    a: Moments, b: Moments, *, binary: bool, spread: float | None = None, alpha: float = 0.05,
    detect: float | None = None,
) -> Lift:  # fmt: skip
    """``measure`` from each group's moments: what a lift over millions of 0/1 units needs
    (counted in SQL, never carried as arrays). ``spread``, both groups' standard deviation
    together, sizes an average's sample (a share's comes from its mean)."""
    if a.n < 2 or b.n < 2:
        raise ExportError(f"need at least 2 treated and 2 holdout units (have {a.n} and {b.n})")
    if detect is not None and (not math.isfinite(detect) or detect == 0):
        raise ExportError(f"--detect {detect}: give a finite lift other than 0")
    diff = compare(a, b, binary=binary)
    if diff is None:
        raise ExportError(
            "the outcome is the same for every unit in each group: no spread to test a lift against"
        )
    assert a.mean is not None and b.mean is not None
    wanted = detect if detect is not None else diff.estimate
    share = b.n / (a.n + b.n)
    needed = None
    if wanted != 0:
        try:
            needed = sample_size(b.mean, wanted, binary=binary, sd=spread, holdout_share=share)
        except ValueError as exc:
            raise ExportError(f"--detect {wanted:g}: {exc}") from None
    return Lift(
        a.mean, b.mean, diff.estimate, diff.low, diff.high, diff.p_value,
        diff.p_value < alpha, a.n, b.n, binary, wanted, needed,
    )  # fmt: skip


def measure_export(path: Path, group: str, outcome: str, *, detect: float | None = None) -> Lift:
    """The lift in an export: ``group`` holds treated or holdout, ``outcome`` 0/1 or numbers.
    Rows with an empty outcome are left out (and counted); any other bad cell is an error."""
    frame, first_row = read_export(path)
    require_columns(frame, path, group, outcome)
    groups = frame[group].str.strip_chars().str.to_lowercase()
    bad = ~groups.is_in(GROUPS) | groups.is_null()
    if bad.any():
        raise ExportError(
            f"{path}: column {group}: {bad_rows(frame[group], bad, first_row)}: "
            "each row must say treated or holdout"
        )
    values = numbers(frame, outcome, path, first_row)
    data = pl.DataFrame({"group": groups, "value": values})
    kept = data.drop_nulls()
    try:
        lift = measure(
            kept.filter(pl.col("group") == "treated")["value"].to_numpy(),
            kept.filter(pl.col("group") == "holdout")["value"].to_numpy(),
            detect=detect,
        )
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None
    return replace(lift, excluded=data.height - kept.height)


# Retention per campaign and group: each customer's first care in the window (stored a day at
# a time, insights/first_care.py), and whether they were still a subscriber ``$days`` later.
# Only the customers who left are looked up: the warehouse never deletes a subscriber (one who
# leaves keeps their row, with left_on), and a hash of every customer cost seconds at 10
# million. What leaves the warehouse is a few rows a campaign, not a row per customer.
RETENTION_SQL = """
WITH units AS ({units}),
leavers AS (SELECT subscriber_id, left_on FROM subscribers WHERE left_on IS NOT NULL)
SELECT u.campaign_id, u.held_out,
    (l.left_on IS NULL OR l.left_on > u.cared_on + to_days($days))::INT AS retained,
    count(*) AS units, min(u.cared_on) AS first, max(u.cared_on) AS last
FROM units u LEFT JOIN leavers l USING (subscriber_id)
GROUP BY ALL
"""


@dataclass(frozen=True)
class CampaignLift:
    campaign_id: str
    first: date
    last: date
    lift: Lift | None  # None: too few units in a group
    treated: int
    held_out: int


def retention_lifts(
    con: duckdb.DuckDBPyConnection, as_of: date, zone: str, *, days: int, since: date,
    until: date | None = None,
) -> list[CampaignLift]:  # fmt: skip
    """Per campaign: retention ``days`` after first care, cared-for against held out, over
    customers first cared for from ``since`` until ``days`` before ``as_of`` (whose outcome is
    known by now), and not after ``until`` (a month's report: its window ends with the month,
    however late it is run). Each customer counts once per campaign."""
    last = as_of - timedelta(days=days)
    if until is not None:
        last = min(last, until)
    if last < since:
        return []
    units, params = first_care_units(con, zone, since, last, today=as_of)
    cells = con.execute(RETENTION_SQL.format(units=units), {**params, "days": days})
    by_campaign: dict[str, list[tuple[bool, int, int, date, date]]] = {}
    for campaign_id, held_out, retained, count, first, last_on in cells.fetchall():
        by_campaign.setdefault(str(campaign_id), []).append(
            (bool(held_out), int(retained), int(count), first, last_on)
        )
    return [_campaign_lift(c, rows) for c, rows in sorted(by_campaign.items())]


def _campaign_lift(campaign_id: str, rows: list[tuple[bool, int, int, date, date]]) -> CampaignLift:
    """A campaign's lift from its counted units: (held out, retained, units, first, last)."""
    treated, held = _retained(rows, held_out=False), _retained(rows, held_out=True)
    enough = min(treated.n, held.n) >= 2
    return CampaignLift(
        campaign_id, min(r[3] for r in rows), max(r[4] for r in rows),
        measure_moments(treated, held, binary=True) if enough else None, treated.n, held.n,
    )  # fmt: skip


def _retained(rows: list[tuple[bool, int, int, date, date]], *, held_out: bool) -> Moments:
    """A group's retention as moments of 0/1 units: its units and how many were retained."""
    units = sum(n for h, _, n, _, _ in rows if h == held_out)
    kept = sum(n for h, r, n, _, _ in rows if h == held_out and r)
    return Moments(units, float(kept), float(kept))
