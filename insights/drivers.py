"""Key drivers: which attributes of the experience matter most to overall satisfaction.

Attributes rated on one survey are correlated (a customer who waited long also rates the staff
lower), so plain correlations credit an attribute with its neighbours' effect and regression
coefficients share it out arbitrarily. Johnson's relative weights (2000) split the explained
variance (R squared) over the attributes by regressing the target on the attributes'
orthogonal counterparts: the weights are non-negative, sum to R squared, and closely agree with
Shapley-value regression at a fraction of its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from insights.exports import ExportError, numbers, read_export, require_columns


@dataclass(frozen=True)
class Driver:
    attribute: str
    importance: float  # share of the explained variance; all attributes' sum to 1
    performance: float  # the attribute's mean score
    n: int

    def as_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "importance": round(self.importance, 4),
            "performance": round(self.performance, 3),
        }


@dataclass(frozen=True)
class DriverAnalysis:
    drivers: list[Driver]  # most important first
    r_squared: float
    n: int
    excluded: int  # rows left out for an empty cell

    def fix_first(self) -> list[str]:
        """Attributes above the mean importance and below the mean performance: the weak,
        important ones to work on first (the importance-performance view)."""
        if not self.drivers:
            return []
        imp = np.mean([d.importance for d in self.drivers])
        perf = np.mean([d.performance for d in self.drivers])
        return [d.attribute for d in self.drivers if d.importance > imp and d.performance < perf]


def relative_weights(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Johnson's raw relative weights of the columns of ``x`` for ``y``, and R squared."""
    data = np.column_stack([x, y])
    corr = np.corrcoef(data, rowvar=False)
    rxx, rxy = corr[:-1, :-1], corr[:-1, -1]
    eigenvalues, vectors = np.linalg.eigh(rxx)
    root = vectors @ np.diag(np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
    beta = np.linalg.lstsq(root, rxy, rcond=None)[0]
    raw = (root**2) @ (beta**2)
    return raw, float(raw.sum())


def analyse(frame: pl.DataFrame, target: str, attributes: list[str]) -> DriverAnalysis:
    """Relative weights of ``attributes`` (numeric columns of ``frame``) for ``target``."""
    used = frame.select([target, *attributes]).drop_nulls()
    excluded = frame.height - used.height
    if used.height < len(attributes) + 3:
        raise ExportError(
            f"{used.height} complete rows for {len(attributes)} attributes: too few to rank them"
        )
    constant = [c for c in used.columns if used[c].std() == 0]
    if constant:
        raise ExportError(f"{', '.join(constant)}: one value only in every row, nothing to learn")
    x = used.select(attributes).to_numpy().astype(float)
    raw, r_squared = relative_weights(x, used[target].to_numpy().astype(float))
    shares = raw / r_squared if r_squared > 0 else np.full(len(attributes), 1 / len(attributes))
    drivers = [
        Driver(a, float(s), float(x[:, i].mean()), used.height)
        for i, (a, s) in enumerate(zip(attributes, shares, strict=True))
    ]
    drivers.sort(key=lambda d: -d.importance)
    return DriverAnalysis(drivers, r_squared, used.height, excluded)


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
