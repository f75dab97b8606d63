"""The statistics behind every "is this real?" in the reports: intervals, tests, sample sizes.

Each figure is a mean over units (a rating, a survey, a case): a share for 0/1 outcomes, an
average for hours. A mean is carried as (n, sum, sum of squares), which SQL aggregates cheaply
and which is all a normal-approximation interval or test needs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

Z95 = 1.959963984540054


def shown_p(p_value: float | None) -> float | None:
    """A p-value as the JSON shows it: six significant digits. Rounded to six decimals, a
    p-value of 3.8e-12 (the demo's planted lift) read 0.0. One below about 1e-308 (a 10-point
    move over a million units) is 0.0 in floats already, and shows so."""
    return None if p_value is None else float(f"{p_value:.6g}")


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


def newcombe(a: Moments, b: Moments, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of ``a`` minus ``b`` for shares:
    each share's Wilson limits combined. Unlike mean +- z SE it stays inside [-1, 1], has width
    at 0% and 100%, and keeps its coverage on small groups."""
    p1, p2 = a.total / a.n, b.total / b.n
    low1, high1 = _wilson_z(a.total, a.n, z)
    low2, high2 = _wilson_z(b.total, b.n, z)
    diff = p1 - p2
    return (
        diff - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2),
        diff + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2),
    )


def _wilson_z(successes: float, n: int, z: float) -> tuple[float, float]:
    found = wilson(successes, n, z)
    assert found is not None
    return found


def newcombe_p(a: Moments, b: Moments) -> float:
    """The two-sided p-value that goes with Newcombe's interval: the alpha at which the
    interval just reaches 0. So "significant at 5%" and "the 95% interval excludes 0" are one
    verdict, never two that disagree at the edges."""
    diff = a.total / a.n - b.total / b.n
    if diff == 0:
        return 1.0
    side = 0 if diff > 0 else 1  # the limit that moves towards 0 as the level rises

    def gap(z: float) -> float:
        limit = newcombe(a, b, z)[side]
        return limit if diff > 0 else -limit

    top = 40.0
    if gap(top) > 0:  # excludes 0 even at z = 40: p below any figure worth showing
        return float(2 * stats.norm.sf(top))
    z0: float = optimize.brentq(gap, 0.0, top, xtol=1e-10)
    return float(2 * stats.norm.sf(z0))


def compare(a: Moments, b: Moments, *, binary: bool) -> Difference | None:
    """``a.mean - b.mean`` with a 95% interval and a p-value that agree. Shares: Newcombe's
    hybrid score interval and the p-value inverted from it; averages: Welch's t interval and
    test. None when either side has fewer than two units, or when averages have no spread in
    either group (nothing to test against)."""
    if a.mean is None or b.mean is None or a.n < 2 or b.n < 2:
        return None
    diff = a.mean - b.mean
    if binary:
        low, high = newcombe(a, b)
        return Difference(diff, low, high, newcombe_p(a, b))
    va, vb = a.variance / a.n, b.variance / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return None
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
    power at this two-sided alpha, when ``holdout_share`` of them are held out: statsmodels'
    power calculation (Cohen's h for shares, the t-test's for averages), rounded up per group.
    A ValueError says why a lift cannot be sized (0, beyond 0-100%, or no spread)."""
    from statsmodels.stats.power import NormalIndPower, TTestIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not math.isfinite(lift) or lift == 0:
        raise ValueError(f"a lift of {lift} cannot be detected; give the smallest that matters")
    ratio = holdout_share / (1 - holdout_share)  # held out per treated unit
    if binary:
        treated = baseline + lift
        if not 0 <= treated <= 1:
            raise ValueError(
                f"a lift of {lift:g} on a share of {baseline:.4g} gives {treated:.4g}, "
                "outside 0 to 1: give a lift the outcome can show"
            )
        effect = proportion_effectsize(treated, baseline)
        solver: Any = NormalIndPower()
    else:
        if not sd:
            raise ValueError("the outcome does not vary: no lift can be sized against it")
        effect = lift / sd
        solver = TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its root finder complains below 2 units per group
        treated_units = float(
            solver.solve_power(effect_size=abs(effect), alpha=alpha, power=power, ratio=ratio)
        )
    if not math.isfinite(treated_units):  # an effect so large that a handful of units show it
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        treated_units = (z / effect) ** 2 * (1 + 1 / ratio)
    return max(2, math.ceil(treated_units)) + max(2, math.ceil(treated_units * ratio))


def false_discovery(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values: with a hundred stores some move by chance, and
    this keeps the share of false alarms among the flagged ones near alpha."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(np.asarray(p_values))]
