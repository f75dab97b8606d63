"""The report's charts as inline SVG (matplotlib), so the report opens offline with no script.

Text stays text in the SVG (``svg.fonttype: none``): the browser draws it in its own fonts,
Chinese included, and the file stays small.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from insights.drivers import Driver
from insights.panorama import Contribution, TrendPoint

INK, MUTED, BAND = "#1f2937", "#6b7280", "#bfdbfe"
STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": MUTED,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    # Labels come from data (store ids, segment names, attribute columns): a "$" in one would
    # start mathtext, which draws it wrongly or raises. Every Text is plain.
    "text.parse_math": False,
}


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def trend_chart(points: Sequence[TrendPoint], target: float | None, scale: float) -> str:
    """The KPI's last 12 months: the value, its 95% band, the target dashed."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(3.6, 1.5))
        xs = list(range(len(points)))
        ys = [p.value * scale if p.value is not None else float("nan") for p in points]
        low = [p.interval[0] * scale if p.interval else float("nan") for p in points]
        high = [p.interval[1] * scale if p.interval else float("nan") for p in points]
        axes.fill_between(xs, low, high, color=BAND, linewidth=0)
        axes.plot(xs, ys, color=INK, marker="o", markersize=2.5, linewidth=1.2)
        if target is not None:
            axes.axhline(target * scale, color=MUTED, linestyle="--", linewidth=0.8)
        axes.set_xticks(xs[::3], [p.month[2:] for p in points][::3])
        return _svg(figure)


def contribution_chart(parts: Sequence[Contribution], scale: float) -> str:
    """Each store's or segment's part in the change: mix and rate, side by side."""
    with plt.rc_context(STYLE):
        height = 0.35 * len(parts) + 0.6
        figure, axes = plt.subplots(figsize=(5.2, height))
        names = [f"{p.scope} {p.key}" for p in parts][::-1]
        ys = range(len(parts))
        rates = [p.rate * scale for p in parts][::-1]
        mixes = [p.mix * scale for p in parts][::-1]
        # one colour whatever the sign: a part that raised the rate is good news for CSAT and
        # bad news for the dissatisfied, and red bars read as bad for both
        axes.barh([y + 0.2 for y in ys], rates, height=0.38, color=INK, label="rate")
        axes.barh([y - 0.2 for y in ys], mixes, height=0.38, color=MUTED, label="mix")
        axes.axvline(0, color=INK, linewidth=0.6)
        axes.set_yticks(list(ys), names)
        axes.legend(frameon=False, loc="lower right", fontsize=8)
        return _svg(figure)


def importance_performance_chart(drivers: Sequence[Driver]) -> str:
    """Importance (x) against performance (y): bottom right is where to act first."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(4.2, 2.8))
        xs = [d.importance for d in drivers]
        ys = [d.performance for d in drivers]
        axes.axvline(sum(xs) / len(xs), color=MUTED, linestyle=":", linewidth=0.8)
        axes.axhline(sum(ys) / len(ys), color=MUTED, linestyle=":", linewidth=0.8)
        axes.scatter(xs, ys, color=INK, s=18)
        for d in drivers:
            axes.annotate(d.attribute, (d.importance, d.performance), fontsize=8,
                          xytext=(4, 3), textcoords="offset points")  # fmt: skip
        axes.set_xlabel("importance (share of explained variance)")
        axes.set_ylabel("mean rating")
        return _svg(figure)
