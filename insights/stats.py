"""The statistics behind every "is this real?" in the reports: intervals, tests, sample sizes.

Each figure is a mean over units (a rating, a survey, a case): a share for 0/1 outcomes, an
average for hours. A mean is carried as (n, sum, sum of squares), which SQL aggregates cheaply
and which is all a normal-approximation interval or test needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Moments:
    """A mean over ``n`` units, from the units' sum and sum of squares."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float:
        """The sample variance (n - 1); 0 for fewer than two units."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total**2 / self.n) / (self.n - 1))


@dataclass(frozen=True)
class Difference:
    """``a`` minus ``b``: its 95% interval and two-sided p-value."""

    estimate: float
    low: float
    high: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a share: right near 0% and 100%, unlike mean +- 2 SE."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(m: Moments) -> tuple[float, float] | None:
    """A t interval of an average (hours to first contact, say)."""
    if m.n < 2 or m.mean is None:
        return None
    half = stats.t.ppf(0.975, m.n - 1) * math.sqrt(m.variance / m.n)
    return m.mean - half, m.mean + half


def compare(a: Moments, b: Moments, *, binary: bool) -> Difference | None:
    """``a.mean - b.mean``. Shares: the two-proportion z-test (pooled under the null) with an
    unpooled interval; averages: Welch's t. None when either side has no unit."""
    if a.mean is None or b.mean is None or a.n < 2 or b.n < 2:
        return None
    diff = a.mean - b.mean
    if binary:
        pooled = (a.total + b.total) / (a.n + b.n)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n))
        se = math.sqrt(a.mean * (1 - a.mean) / a.n + b.mean * (1 - b.mean) / b.n)
        p = 2 * stats.norm.sf(abs(diff) / se0) if se0 > 0 else 1.0  # all 0s or all 1s
        return Difference(diff, diff - Z95 * se, diff + Z95 * se, float(p))
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, 0.0 if diff else 1.0)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    t = stats.t.ppf(0.975, df)
    p = 2 * stats.t.sf(abs(diff) / se, df)
    return Difference(diff, diff - t * se, diff + t * se, float(p))


def moments_of(values: np.ndarray) -> Moments:
    v = np.asarray(values, dtype=float)
    return Moments(len(v), float(v.sum()), float((v * v).sum()))


def sample_size(
    baseline: float, lift: float, *, binary: bool, sd: float | None = None, power: float = 0.8,
    alpha: float = 0.05, holdout_share: float = 0.5,
) -> int:  # fmt: skip
    """Units a campaign needs (treated and held out together) to detect ``lift`` with this
    power at this two-sided alpha, when ``holdout_share`` of them are held out."""
    if lift == 0:
        raise ValueError("a lift of 0 cannot be detected; give the smallest lift that matters")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    if binary:
        treated = min(max(baseline + lift, 1e-9), 1 - 1e-9)
        var = baseline * (1 - baseline) / holdout_share + treated * (1 - treated) / (
            1 - holdout_share
        )
    else:
        if sd is None:
            raise ValueError("a numeric outcome needs its standard deviation")
        var = sd * sd * (1 / holdout_share + 1 / (1 - holdout_share))
    needed: float = z * z * var / (lift * lift)
    return math.ceil(needed)


def false_discovery(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values: with a hundred stores some move by chance, and
    this keeps the share of false alarms among the flagged ones near alpha."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(np.asarray(p_values))]
