"""Key drivers: which attributes of the experience matter most to overall satisfaction.

Attributes rated on one survey are correlated (a customer who waited long also rates the staff
lower), so plain correlations credit an attribute with its neighbours' effect and regression
coefficients share it out arbitrarily. The Shapley (LMG) decomposition splits the explained
variance (R squared) over the attributes by averaging each one's gain in R squared over every
order of entering them: the shares are non-negative, sum to 1 and are the same whatever the
order of the columns. It is each attribute's share of the explained variance, not a causal
effect. Johnson's relative weights only approximate it and can rank attributes differently
(mtcars: hp first instead of third), so it is computed exactly, from every subset's regression,
up to ``EXACT_MAX`` attributes, and from sampled orders above that, with the sampling error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from insights.exports import ExportError, numbers, read_export, require_columns

EXACT_MAX = 15  # 2^15 subset regressions, solved in batches: about a second
SAMPLED_ORDERS = 2000  # orders drawn above EXACT_MAX
BOOTSTRAP = 200  # resamples for each share's 95% interval
BOOTSTRAP_MAX = 12  # attributes: 200 x 2^12 subset regressions take about 4 s here
COLLINEAR_R2 = 0.9  # an attribute this well explained by the others (VIF 10) gets a warning
RIDGE = 1e-9  # added to the correlations' diagonal so exactly collinear subsets solve
SEED = 23  # fixed: the same export gives the same intervals every time


@dataclass(frozen=True)
class Driver:
    attribute: str
    importance: float  # share of the explained variance; all attributes' sum to 1
    performance: float  # the attribute's mean score
    n: int
    interval: tuple[float, float] | None = None  # bootstrap 95% (None above BOOTSTRAP_MAX)

    def as_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "importance": round(self.importance, 4),
            "interval": None if self.interval is None else [round(v, 4) for v in self.interval],
            "performance": round(self.performance, 3),
        }


@dataclass(frozen=True)
class DriverAnalysis:
    drivers: list[Driver]  # most important first
    r_squared: float
    n: int
    excluded: int  # rows left out for an empty cell
    method: str = "exact"  # exact | sampled
    sampling_error: float = 0.0  # largest standard error of a sampled share (0 when exact)
    warnings: tuple[str, ...] = ()

    def fix_first(self) -> list[str]:
        """Attributes above the mean importance and below the mean performance: the weak,
        important ones to work on first (the importance-performance view)."""
        if not self.drivers:
            return []
        imp = np.mean([d.importance for d in self.drivers])
        perf = np.mean([d.performance for d in self.drivers])
        return [d.attribute for d in self.drivers if d.importance > imp and d.performance < perf]

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "r_squared": round(self.r_squared, 4),
            "method": self.method,
            "sampling_error": round(self.sampling_error, 4),
            "attributes": [d.as_json() for d in self.drivers],
            "fix_first": self.fix_first(),
            "warnings": list(self.warnings),
            "excluded_rows": self.excluded,
        }


@functools.cache
def _lattice(p: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The subsets of ``p`` attributes: every mask's size, the masks and columns of each size,
    and the Shapley weight of a subset of each size (computed once per ``p``)."""
    masks = np.arange(1 << p)
    sizes = np.array([bin(m).count("1") for m in masks])
    by_size = []
    for size in range(1, p + 1):
        chosen = masks[sizes == size]
        by_size.append((chosen, np.array([[j for j in range(p) if m >> j & 1] for m in chosen])))
    weights = np.array(
        [math.factorial(k) * math.factorial(p - k - 1) / math.factorial(p) for k in range(p)]
    )
    return sizes, by_size, weights


def subset_r2(corrs: np.ndarray) -> np.ndarray:
    """R squared of the regression on every subset of the attributes, indexed by the subset's
    bit mask, for each of a stack of correlation matrices (attributes first, the target last).
    """
    p = corrs.shape[-1] - 1
    rxx, rxy = corrs[:, :p, :p], corrs[:, :p, p]
    r2 = np.zeros((len(corrs), 1 << p))
    for chosen, columns in _lattice(p)[1]:
        blocks = rxx[:, columns[:, :, None], columns[:, None, :]]
        vectors = rxy[:, columns]
        # a ridge far below any real signal keeps an exactly collinear subset solvable: its
        # redundant column then adds nothing, as a pseudo-inverse would have it
        ridged = blocks + RIDGE * np.eye(columns.shape[1])
        solved = np.linalg.solve(ridged, vectors[..., None])[..., 0]
        r2[:, chosen] = np.einsum("bsi,bsi->bs", solved, vectors)
    return r2


def shapley_exact(corr: np.ndarray) -> np.ndarray:
    """Each attribute's Shapley value of R squared, its gain averaged over every order: of one
    correlation matrix, or row by row of a stack of them."""
    stack = corr if corr.ndim == 3 else corr[None]
    p = stack.shape[-1] - 1
    sizes, _, weights = _lattice(p)
    # batches of about 2^18 subset regressions keep memory flat however many resamples
    step = max(1, (1 << 18) >> p)
    r2 = np.concatenate([subset_r2(stack[i : i + step]) for i in range(0, len(stack), step)])
    masks = np.arange(1 << p)
    values = np.zeros((len(stack), p))
    for j in range(p):
        without = masks[(masks >> j & 1) == 0]
        gains = r2[:, without | 1 << j] - r2[:, without]
        values[:, j] = gains @ weights[sizes[without]]
    return values if corr.ndim == 3 else values[0]


def _r2_of(corr: np.ndarray, columns: list[int]) -> float:
    if not columns:
        return 0.0
    p = corr.shape[0] - 1
    rxy = corr[columns, p]
    solved = np.linalg.pinv(corr[np.ix_(columns, columns)], hermitian=True) @ rxy
    return float(solved @ rxy)


def shapley_sampled(
    corr: np.ndarray, orders: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values estimated from ``orders`` random orders, and their standard errors."""
    p = corr.shape[0] - 1
    gains = np.zeros((orders, p))
    for o in range(orders):
        order = [int(j) for j in rng.permutation(p)]
        previous = 0.0
        for k, j in enumerate(order):
            current = _r2_of(corr, order[: k + 1])
            gains[o, j] = current - previous
            previous = current
    return gains.mean(axis=0), gains.std(axis=0, ddof=1) / math.sqrt(orders)


def _rescaled(data: np.ndarray) -> np.ndarray:
    """Each column divided by its largest size: correlations do not depend on a column's
    scale, and the sums of squares behind them can then not overflow (values near 1e300 gave
    R² 0 and even shares)."""
    size = np.abs(data).max(axis=0)
    return data / np.where(size > 0, size, 1.0)


def _correlations(data: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        corr: np.ndarray = np.nan_to_num(np.corrcoef(data, rowvar=False))
    np.fill_diagonal(corr, 1.0)  # a constant column correlates 0 with the rest
    return corr


def _shares(data: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Shapley shares of R squared for the last column of ``data`` on the others, R squared,
    and the shares' largest sampling error (0 when exact)."""
    corr = _correlations(data)
    p = corr.shape[0] - 1
    if p <= EXACT_MAX:
        values, errors = shapley_exact(corr), np.zeros(p)
    else:
        values, errors = shapley_sampled(corr, SAMPLED_ORDERS, rng)
    total = float(values.sum())
    if total <= 0:
        return np.full(p, 1 / p), 0.0, 0.0
    return values / total, total, float((errors / total).max())


def collinear(corr: np.ndarray, names: list[str]) -> list[str]:
    """A warning for each attribute (nearly) a combination of the others: its share is then
    split with them arbitrarily, and its interval is wide."""
    p = len(names)
    found = []
    for j in range(p):
        others = [k for k in range(p) if k != j]
        own = corr[np.ix_([*others, j], [*others, j])]
        r2 = _r2_of(own, list(range(p - 1)))
        if r2 >= COLLINEAR_R2:
            found.append(
                f"{names[j]} is nearly a combination of {', '.join(names[k] for k in others)} "
                f"(R² {r2:.3f} from them): its share is split with theirs arbitrarily"
            )
    return found


def _bootstrap(data: np.ndarray, rng: np.random.Generator) -> list[tuple[float, float] | None]:
    """Each share's 95% percentile interval over resamples of the rows, all solved together.
    Only up to ``BOOTSTRAP_MAX`` attributes: the cost doubles with each one."""
    n, width = data.shape
    drawn = rng.integers(0, n, (BOOTSTRAP, n)) + n * np.arange(BOOTSTRAP)[:, None]
    counts = np.bincount(drawn.ravel(), minlength=BOOTSTRAP * n).reshape(BOOTSTRAP, n) / n
    centred = data - data.mean(axis=0)  # numerically kinder sums of squares
    products = (centred[:, :, None] * centred[:, None, :]).reshape(n, -1)
    means = counts @ centred
    cov = (counts @ products).reshape(-1, width, width) - means[:, :, None] * means[:, None, :]
    variance = np.einsum("bii->bi", cov)
    # a column one value in a resample (common on a small store's 1-5 ratings) leaves only
    # rounding in its variance: it correlates 0 with the rest, not rounding / rounding
    constant = variance <= 1e-9 * data.var(axis=0)
    sd = np.sqrt(np.where(constant, 1.0, variance))
    corrs = np.where(
        constant[:, :, None] | constant[:, None, :], 0.0, cov / (sd[:, :, None] * sd[:, None, :])
    )
    corrs = np.clip(corrs, -1.0, 1.0)
    corrs[:, np.arange(width), np.arange(width)] = 1.0
    values = shapley_exact(corrs)
    totals = values.sum(axis=1, keepdims=True)
    even = np.full_like(values, 1 / values.shape[1])
    shares = np.where(totals > 0, values / np.where(totals > 0, totals, 1), even)
    low, high = np.percentile(shares, [2.5, 97.5], axis=0)
    return [(float(a), float(b)) for a, b in zip(low, high, strict=True)]


def analyse(frame: pl.DataFrame, target: str, attributes: list[str]) -> DriverAnalysis:
    """Shapley shares of ``attributes`` (numeric columns of ``frame``) for ``target``."""
    used = frame.select([target, *attributes]).drop_nulls()
    excluded = frame.height - used.height
    if used.height < len(attributes) + 3:
        raise ExportError(
            f"{used.height} complete rows for {len(attributes)} attributes: too few to rank them"
        )
    constant = [c for c in used.columns if used[c].std() == 0]
    if constant:
        raise ExportError(f"{', '.join(constant)}: one value only in every row, nothing to learn")
    data = used.select([*attributes, target]).to_numpy().astype(float)
    if not np.isfinite(data).all():
        raise ExportError("a value is not a finite number (NaN or infinite): nothing to rank")
    scaled = _rescaled(data)
    rng = np.random.default_rng(SEED)
    shares, r_squared, error = _shares(scaled, rng)
    exact = len(attributes) <= EXACT_MAX
    bootstrap = len(attributes) <= BOOTSTRAP_MAX
    intervals = _bootstrap(scaled, rng) if bootstrap else [None] * len(attributes)
    means = [float(used[a].mean()) for a in attributes]  # type: ignore[arg-type]
    drivers = [
        Driver(a, float(shares[i]), means[i], used.height, intervals[i])
        for i, a in enumerate(attributes)
    ]
    drivers.sort(key=lambda d: -d.importance)
    method = "exact" if exact else "sampled"
    warnings = tuple(collinear(_correlations(scaled), attributes))
    return DriverAnalysis(drivers, r_squared, used.height, excluded, method, error, warnings)


def is_id_column(name: str) -> bool:
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id") or lowered.endswith("id_")


def analyse_export(
    path: Path, target: str, attributes: list[str] | None = None
) -> tuple[DriverAnalysis, list[str]]:
    """The drivers of ``target`` in a survey export; also the columns ignored (ids, text).
    Attributes default to every other column except ids and columns with no number at all."""
    frame, first_row = read_export(path)
    require_columns(frame, path, target, *(attributes or []))
    candidates = attributes or [c for c in frame.columns if c != target and not is_id_column(c)]
    ignored = [c for c in frame.columns if c != target and c not in candidates]
    chosen = []
    for column in candidates:
        text = frame[column].str.strip_chars()
        if attributes is None and text.cast(pl.Float64, strict=False).is_null().all():
            ignored.append(column)  # a text column (a store name, a comment)
            continue
        chosen.append(column)
    if not chosen:
        raise ExportError(f"{path}: no attribute columns beside {target}")
    numeric = frame.select(numbers(frame, c, path, first_row) for c in [target, *chosen])
    return analyse(numeric, target, chosen), ignored
