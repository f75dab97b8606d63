"""From KPI moments to the report's figures: each KPI against last month and its target,
flagged when it moves, marked when the move is within noise, and drilled down to what moved it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from insights.kpis import KPI_BY_NAME, KPIS, SCOPES, TREND_MONTHS, Better, Kpi, shift_month
from insights.stats import Moments, compare, false_discovery, mean_interval, shown_p, wilson
from insights.targets import Targets

# A mean of values that sum to 0 can come out as 1e-17 (0.1 + 0.2 - 0.3 in floats): a level
# this close to 0 is 0, with no relative change, and a move this small is no move.
ROUNDING = 1e-9

Cell = tuple[str, str, str | None]  # kpi, scope, key
DRILL_SCOPES = ("store", "segment")


@dataclass(frozen=True)
class KpiRow:
    kpi: str
    scope: str
    key: str | None
    value: float | None
    previous: float | None
    target: float | None
    change: float | None  # relative to previous (what the flag reads; None from 0)
    flag: str | None  # up | down | None
    significant: bool
    n: int
    previous_n: int
    interval: tuple[float, float] | None  # the value's 95% interval
    difference_interval: tuple[float, float] | None  # of ``difference``, 95%
    p_value: float | None  # adjusted for the breakdown's many cells
    better: Better  # which way is good for this KPI

    @property
    def difference(self) -> float | None:
        """value - previous, in the KPI's own units (points for a share): what the interval
        and the drill-down's rate and mix parts are in."""
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def good(self) -> bool | None:
        """Whether the flagged move is for the better (green) or the worse (red)."""
        if self.flag is None:
            return None
        return (self.flag == "up") == (self.better == "higher")

    def as_json(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi, "scope": self.scope, "key": self.key,
            "value": _round(self.value), "previous": _round(self.previous),
            "target": self.target, "change": _round(self.change), "flag": self.flag,
            "significant": self.significant, "n": self.n, "previous_n": self.previous_n,
            "interval": _pair(self.interval), "difference": _round(self.difference),
            "difference_interval": _pair(self.difference_interval),
            "p_value": shown_p(self.p_value),
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


def kpi_rows(
    frame: pl.DataFrame, month: str, targets: Targets, kpis: Sequence[Kpi] = KPIS,
    scopes: Sequence[str] = SCOPES,
) -> list[KpiRow]:  # fmt: skip
    """One row per KPI overall (with no unit, its value is None), and per scope key with
    units this month or last. ``kpis`` and ``scopes`` (``overall`` first) default to the
    warehouse's; an export brings its own."""
    by_name = {k.name: k for k in kpis}
    order = {k.name: n for n, k in enumerate(kpis)}
    now = moments_by_cell(frame, month)
    before = moments_by_cell(frame, shift_month(month, -1))
    empty = Moments(0, 0.0, 0.0)
    overall = {(k.name, "overall", None) for k in kpis}
    cells = sorted(
        set(now) | set(before) | overall,
        key=lambda c: (order[c[0]], list(scopes).index(c[1]), c[2] or ""),
    )
    tests = {
        c: compare(now.get(c, empty), before.get(c, empty), binary=by_name[c[0]].binary)
        for c in cells
    }
    p_values = _adjusted_p(tests)
    return [
        _row(
            c,
            by_name[c[0]],
            now.get(c, empty),
            before.get(c, empty),
            tests[c],
            p_values.get(c),
            targets,
        )
        for c in cells
    ]


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
    cell: Cell, spec: Kpi, now: Moments, before: Moments, test: Any, p: float | None,
    targets: Targets,
) -> KpiRow:  # fmt: skip
    kpi, scope, key = cell
    value, previous = now.mean, before.mean
    at_zero = previous is not None and abs(previous) < ROUNDING
    change = (
        None if value is None or previous is None or at_zero else (value - previous) / abs(previous)
    )
    enough = min(now.n, before.n) >= targets.min_units
    flag = None
    # more than the threshold by more than rounding: 100% to 95% is a change of -0.0500...04
    if change is not None and enough and abs(change) > targets.flag_threshold + ROUNDING:
        flag = "up" if change > 0 else "down"
    elif at_zero and value is not None and abs(value) >= ROUNDING and enough:
        # a move away from 0 has no relative size (change stays None), but any move is more
        # than the threshold: an opt-out rate from 0% to 2% is flagged
        flag = "up" if value > 0 else "down"
    return KpiRow(
        kpi, scope, key, value, previous, targets.target(kpi, scope, key), change, flag,
        p is not None and p < targets.alpha, now.n, before.n, _interval(spec.binary, now),
        (test.low, test.high) if test else None, p, spec.better,
    )  # fmt: skip


def _interval(binary: bool, m: Moments) -> tuple[float, float] | None:
    return wilson(m.total, m.n) if binary else mean_interval(m)


@dataclass(frozen=True)
class TrendPoint:
    month: str
    value: float | None
    interval: tuple[float, float] | None
    n: int


def trend(frame: pl.DataFrame, kpi: str, month: str) -> list[TrendPoint]:
    """The KPI overall, month by month for the 12 months up to ``month`` (gaps as None)."""
    binary = KPI_BY_NAME[kpi].binary
    overall = frame.filter((pl.col("kpi") == kpi) & (pl.col("scope") == "overall"))
    by_month = {
        r["month"]: Moments(r["n"], r["total"], r["squares"]) for r in overall.iter_rows(named=True)
    }
    points = []
    for back in range(TREND_MONTHS - 1, -1, -1):
        m = shift_month(month, -back)
        moments = by_month.get(m, Moments(0, 0.0, 0.0))
        points.append(TrendPoint(m, moments.mean, _interval(binary, moments), moments.n))
    return points


@dataclass(frozen=True)
class Contribution:
    """One store's (or segment's) part in the overall change: ``rate`` from its own value
    changing, ``mix`` from its share of the units changing while its value sits above or
    below the overall figure. A key at the overall figure that grows or shrinks moves nothing,
    so its mix is 0. The parts of all keys sum exactly to the overall change."""

    scope: str
    key: str
    mix: float
    rate: float
    value: float | None
    previous: float | None
    n: int
    previous_n: int
    name: str | None = None  # the store's name, beside its id

    @property
    def total(self) -> float:
        return self.mix + self.rate

    def as_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope, "key": self.key, "name": self.name,
            "contribution": round(self.total, 5), "mix": round(self.mix, 5),
            "rate": round(self.rate, 5), "n": self.n, "previous_n": self.previous_n,
        }  # fmt: skip


def contributions(
    frame: pl.DataFrame, kpi: str, scope: str, month: str, names: Mapping[str, str] | None = None
) -> list[Contribution]:
    """Every key's part in the overall change of ``kpi`` against the month before, largest
    first. ``names`` puts a name beside each key (stores' names)."""
    now, before = (
        {c[2]: m for c, m in moments_by_cell(frame, at).items() if c[:2] == (kpi, scope)}
        for at in (month, shift_month(month, -1))
    )
    total_now, total_before = (sum(m.n for m in side.values()) for side in (now, before))
    if not total_now or not total_before:
        return []
    # The level a key's mix is measured from: the overall figure, midway between the months
    # like the key's own, so that the mix parts (their shares' moves sum to 0) still add up.
    level = (_pooled(now.values()) + _pooled(before.values())) / 2
    parts = [
        _contribution(
            scope,
            key,
            now.get(key),
            before.get(key),
            total_now,
            total_before,
            level,
            (names or {}).get(key),
        )
        for key in set(now) | set(before)
        if key is not None
    ]
    return sorted(parts, key=lambda c: (-abs(c.total), c.key))


def _pooled(side: Iterable[Moments]) -> float:
    moments = list(side)
    return sum(m.total for m in moments) / sum(m.n for m in moments)


def _contribution(
    scope: str, key: str, now: Moments | None, before: Moments | None, total_now: int,
    total_before: int, level: float, name: str | None,
) -> Contribution:  # fmt: skip
    r1 = now.mean if now else None
    r0 = before.mean if before else None
    r1 = r0 if r1 is None else r1  # a key missing from one month changes only the mix
    r0 = r1 if r0 is None else r0
    assert r0 is not None and r1 is not None
    w1 = (now.n if now else 0) / total_now
    w0 = (before.n if before else 0) / total_before
    return Contribution(
        scope, key, (w1 - w0) * ((r0 + r1) / 2 - level), (r1 - r0) * (w0 + w1) / 2,
        now.mean if now else None, before.mean if before else None,
        now.n if now else 0, before.n if before else 0, name,
    )  # fmt: skip


def drill_downs(
    frame: pl.DataFrame, rows: Iterable[KpiRow], month: str, top: int = 5, *,
    scopes: Iterable[str] = DRILL_SCOPES, names: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, list[Contribution]]:  # fmt: skip
    """For each overall KPI that moved (flagged, or a significant move below the flag's
    threshold), the keys of each of ``scopes`` that moved it most; ``names`` by scope puts
    names beside keys."""
    flagged = [r.kpi for r in rows if r.scope == "overall" and (r.flag or r.significant)]
    return {
        kpi: [
            c
            for scope in scopes
            for c in contributions(frame, kpi, scope, month, (names or {}).get(scope))[:top]
        ]
        for kpi in flagged
    }
