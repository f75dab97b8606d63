"""From KPI moments to the report's figures: each KPI against last month and its target,
flagged when it moves, marked when the move is within noise, and drilled down to what moved it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from insights.kpis import KPI_BY_NAME, KPIS, SCOPES, TREND_MONTHS, shift_month
from insights.stats import Moments, compare, false_discovery, mean_interval, wilson
from insights.targets import Targets

Cell = tuple[str, str, str | None]  # kpi, scope, key
DRILL_SCOPES = ("store", "segment")
KPI_ORDER = {k.name: n for n, k in enumerate(KPIS)}


@dataclass(frozen=True)
class KpiRow:
    kpi: str
    scope: str
    key: str | None
    value: float | None
    previous: float | None
    target: float | None
    change: float | None  # relative to previous
    flag: str | None  # up | down | None
    significant: bool
    n: int
    previous_n: int
    interval: tuple[float, float] | None  # the value's 95% interval
    change_interval: tuple[float, float] | None  # value - previous, 95%
    p_value: float | None  # adjusted for the breakdown's many cells

    @property
    def good(self) -> bool | None:
        """Whether the flagged move is for the better (green) or the worse (red)."""
        if self.flag is None:
            return None
        return (self.flag == "up") == (KPI_BY_NAME[self.kpi].better == "higher")

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi, "scope": self.scope, "key": self.key,
            "value": _round(self.value), "previous": _round(self.previous),
            "target": self.target, "change": _round(self.change), "flag": self.flag,
            "significant": self.significant, "n": self.n, "previous_n": self.previous_n,
            "interval": _pair(self.interval), "change_interval": _pair(self.change_interval),
            "p_value": _round(self.p_value, 6),
        }  # fmt: skip


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _pair(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [round(pair[0], 4), round(pair[1], 4)]


def moments_by_cell(frame: pl.DataFrame, month: str) -> dict[Cell, Moments]:
    rows = frame.filter(pl.col("month") == month).iter_rows(named=True)
    return {
        (r["kpi"], r["scope"], r["key"]): Moments(r["n"], r["total"], r["squares"]) for r in rows
    }


def kpi_rows(frame: pl.DataFrame, month: str, targets: Targets) -> list[KpiRow]:
    """One row per KPI overall (with no unit, its value is None), and per scope key with
    units this month or last."""
    now = moments_by_cell(frame, month)
    before = moments_by_cell(frame, shift_month(month, -1))
    empty = Moments(0, 0.0, 0.0)
    overall = {(k.name, "overall", None) for k in KPIS}
    cells = sorted(set(now) | set(before) | overall, key=_cell_order)
    tests = {c: compare(now.get(c, empty), before.get(c, empty), binary=_binary(c)) for c in cells}
    p_values = _adjusted_p(tests)
    return [
        _row(c, now.get(c, empty), before.get(c, empty), tests[c], p_values.get(c), targets)
        for c in cells
    ]


def _binary(cell: Cell) -> bool:
    return KPI_BY_NAME[cell[0]].binary


def _cell_order(cell: Cell) -> tuple[int, int, str]:
    kpi, scope, key = cell
    return KPI_ORDER[kpi], SCOPES.index(scope), key or ""


def _adjusted_p(tests: dict[Cell, Any]) -> dict[Cell, float]:
    """Overall: the test's own p; breakdowns: adjusted within each KPI and scope."""
    adjusted: dict[Cell, float] = {}
    families: dict[tuple[str, str], list[Cell]] = {}
    for cell, test in tests.items():
        if test is None:
            continue
        if cell[1] == "overall":
            adjusted[cell] = test.p_value
        else:
            families.setdefault(cell[:2], []).append(cell)
    for members in families.values():
        qs = false_discovery([tests[c].p_value for c in members])
        adjusted.update(zip(members, qs, strict=True))
    return adjusted


def _row(
    cell: Cell, now: Moments, before: Moments, test: Any, p: float | None, targets: Targets
) -> KpiRow:
    kpi, scope, key = cell
    value, previous = now.mean, before.mean
    change = (value - previous) / abs(previous) if value is not None and previous else None
    enough = min(now.n, before.n) >= targets.min_units
    flag = None
    if change is not None and enough and abs(change) > targets.flag_threshold:
        flag = "up" if change > 0 else "down"
    return KpiRow(
        kpi, scope, key, value, previous, targets.target(kpi, scope, key), change, flag,
        p is not None and p < targets.alpha, now.n, before.n, _interval(kpi, now),
        (test.low, test.high) if test else None, p,
    )  # fmt: skip


def _interval(kpi: str, m: Moments) -> tuple[float, float] | None:
    return wilson(m.total, m.n) if KPI_BY_NAME[kpi].binary else mean_interval(m)


@dataclass(frozen=True)
class TrendPoint:
    month: str
    value: float | None
    interval: tuple[float, float] | None
    n: int


def trend(frame: pl.DataFrame, kpi: str, month: str) -> list[TrendPoint]:
    """The KPI overall, month by month for the 12 months up to ``month`` (gaps as None)."""
    overall = frame.filter((pl.col("kpi") == kpi) & (pl.col("scope") == "overall"))
    by_month = {
        r["month"]: Moments(r["n"], r["total"], r["squares"]) for r in overall.iter_rows(named=True)
    }
    points = []
    for back in range(TREND_MONTHS - 1, -1, -1):
        m = shift_month(month, -back)
        moments = by_month.get(m, Moments(0, 0.0, 0.0))
        points.append(TrendPoint(m, moments.mean, _interval(kpi, moments), moments.n))
    return points


@dataclass(frozen=True)
class Contribution:
    """One store's (or segment's) part in the overall change: ``mix`` from its share of the
    units changing, ``rate`` from its own value changing. The parts of all keys sum exactly to
    the overall change (a symmetric shift-share split)."""

    scope: str
    key: str
    mix: float
    rate: float
    value: float | None
    previous: float | None
    n: int
    previous_n: int

    @property
    def total(self) -> float:
        return self.mix + self.rate


def contributions(frame: pl.DataFrame, kpi: str, scope: str, month: str) -> list[Contribution]:
    """Every key's part in the overall change of ``kpi`` against the month before, largest
    first."""
    now, before = (
        {c[2]: m for c, m in moments_by_cell(frame, at).items() if c[:2] == (kpi, scope)}
        for at in (month, shift_month(month, -1))
    )
    total_now, total_before = (sum(m.n for m in side.values()) for side in (now, before))
    if not total_now or not total_before:
        return []
    parts = [
        _contribution(scope, key, now.get(key), before.get(key), total_now, total_before)
        for key in set(now) | set(before)
        if key is not None
    ]
    return sorted(parts, key=lambda c: -abs(c.total))


def _contribution(
    scope: str, key: str, now: Moments | None, before: Moments | None, total_now: int,
    total_before: int,
) -> Contribution:  # fmt: skip
    r1 = now.mean if now else None
    r0 = before.mean if before else None
    r1 = r0 if r1 is None else r1  # a key missing from one month changes only the mix
    r0 = r1 if r0 is None else r0
    assert r0 is not None and r1 is not None
    w1 = (now.n if now else 0) / total_now
    w0 = (before.n if before else 0) / total_before
    return Contribution(
        scope, key, (w1 - w0) * (r0 + r1) / 2, (r1 - r0) * (w0 + w1) / 2,
        now.mean if now else None, before.mean if before else None,
        now.n if now else 0, before.n if before else 0,
    )  # fmt: skip


def drill_downs(
    frame: pl.DataFrame, rows: Iterable[KpiRow], month: str, top: int = 5
) -> dict[str, list[Contribution]]:
    """For each overall KPI that moved (flagged, or a significant move below the flag's
    threshold), the stores and segments that moved it most."""
    flagged = [r.kpi for r in rows if r.scope == "overall" and (r.flag or r.significant)]
    return {
        kpi: [c for scope in DRILL_SCOPES for c in contributions(frame, kpi, scope, month)[:top]]
        for kpi in flagged
    }
