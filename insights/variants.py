"""Message variant tests as every surface shows them: each variant's sends, outcomes, rate
with its 95% Wilson interval, the probability it is best, and the winner with when it was
declared. ``careloop insights variants`` and the monthly report both call
``variant_report``, on the campaign definition the warehouse recorded when it last planned.

The figures cover the whole test up to ``now`` (the sends the bandit planned for contact; the
held-out rows have no variant), from the same tally the bandit learns from
(campaigns/variants.py), so a report shows exactly what the next plan will act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from campaigns.spec import Campaign, CampaignError
from campaigns.variants import Winner, plan_seed, probability_best, recorded_winner, tally
from insights.stats import wilson

OUTCOME_LABELS = {"csat": "CSAT (ratings of 4-5)", "response": "response rate (surveys rated)"}


@dataclass(frozen=True)
class VariantFigures:
    name: str
    sends: int
    outcomes: int
    successes: int
    p_best: float

    @property
    def rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.successes, self.outcomes)

    def as_json(self) -> dict[str, Any]:
        low_high = self.interval
        return {
            "variant": self.name,
            "sends": self.sends,
            "outcomes": self.outcomes,
            "successes": self.successes,
            "rate": None if self.rate is None else round(self.rate, 6),
            "ci_low": None if low_high is None else round(low_high[0], 6),
            "ci_high": None if low_high is None else round(low_high[1], 6),
            "p_best": self.p_best,  # in full: the text shows p_best_text
        }


@dataclass(frozen=True)
class VariantReport:
    campaign: str
    outcome: str
    as_of: datetime
    variants: list[VariantFigures]
    winner: Winner | None
    p_best_needed: float
    min_outcomes: int
    max_looks: int

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS[self.outcome]

    def rule(self) -> str:
        return (
            f"P(best) >= {self.p_best_needed} with {self.min_outcomes} outcomes per variant, "
            f"within the test's first {self.max_looks} plans"
        )

    def as_json(self) -> dict[str, Any]:
        w = self.winner
        return {
            "campaign": self.campaign,
            "outcome": self.outcome,
            "as_of": self.as_of.isoformat(),
            "stopping_rule": {
                "p_best": self.p_best_needed,
                "min_outcomes": self.min_outcomes,
                "max_looks": self.max_looks,
            },
            "variants": [v.as_json() for v in self.variants],
            "winner": None
            if w is None
            else {
                "variant": w.variant,
                "declared_on": w.declared_on.isoformat(),
                "look": w.look,
                "p_best": w.p_best,
            },
        }


def recorded_campaign(con: duckdb.DuckDBPyConnection, name: str) -> Campaign | None:
    """The definition the warehouse recorded when the campaign last planned, if it did."""
    row = con.execute("SELECT definition FROM campaigns WHERE campaign_id = ?", [name]).fetchone()
    return Campaign.model_validate_json(row[0]) if row else None


def variant_report(
    con: duckdb.DuckDBPyConnection, name: str, now: datetime, reply_window_hours: int
) -> VariantReport:
    """One campaign's test as of ``now``; a CampaignError names a campaign with no test."""
    campaign = recorded_campaign(con, name)
    if campaign is None or campaign.care.variants is None:
        known = ", ".join(tested_campaigns(con)) or "none"
        what = "no message variants" if campaign else "nothing (an unknown name, or not run yet)"
        raise CampaignError(f"campaign {name!r} has planned {what}; campaigns that have: {known}")
    test = campaign.care.variants
    counts = tally(con, name, campaign.care, now, reply_window_hours)
    best = probability_best(counts, np.random.default_rng(plan_seed(name, now.date())))
    figures = [
        VariantFigures(n, int(s), int(o), int(k), float(p))
        for n, s, o, k, p in zip(
            counts.names, counts.sends, counts.outcomes, counts.successes, best, strict=True
        )
    ]
    return VariantReport(
        name, test.outcome, now, figures, recorded_winner(con, name, counts.names),
        test.stop.p_best, test.stop.min_outcomes, test.stop.max_looks,
    )  # fmt: skip


def tested_campaigns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Campaigns whose outbox holds variant sends, by name."""
    rows = con.execute(
        "SELECT DISTINCT campaign_id FROM care_actions WHERE variant IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def variant_reports(
    con: duckdb.DuckDBPyConnection, now: datetime, reply_window_hours: int
) -> list[VariantReport]:
    """Every tested campaign's report whose recorded definition still has its variants."""
    found = []
    for name in tested_campaigns(con):
        campaign = recorded_campaign(con, name)
        if campaign is not None and campaign.care.variants is not None:
            found.append(variant_report(con, name, now, reply_window_hours))
    return found


def p_best_text(p: float) -> str:
    """A probability of being best as every surface shows it: four decimals, and the ends
    said as bounds (0.9998 is not certainty beside a stopping rule of 0.997)."""
    if p > 0.9999:
        return ">0.9999"
    if p < 0.0001:
        return "<0.0001"
    return f"{p:.4f}"


def variant_markdown(reports: list[VariantReport]) -> str:
    """The tests as a section of the loop's Markdown report ('' with none)."""
    if not reports:
        return ""
    lines = ["", "## Message variants", ""]
    for t in reports:
        w = t.winner
        verdict = (f"winner {w.variant}, declared on {w.declared_on} (plan {w.look}, P(best) "
                   f"{p_best_text(w.p_best)})" if w else "no winner declared yet")  # fmt: skip
        lines += [
            f"{t.campaign}, {t.outcome_label}, since the test began: {verdict}. "
            f"Stopping rule: {t.rule()}.",
            "",
            "| variant | sends | outcomes | rate % | 95% interval | P(best) |",
            "|---|---:|---:|---:|---|---:|",
            *(_markdown_row(v) for v in t.variants),
            "",
        ]
    return "\n".join(lines)


def _markdown_row(v: VariantFigures) -> str:
    rate = "-" if v.rate is None else f"{v.rate * 100:.1f}"
    low_high = v.interval
    shown = "-" if low_high is None else f"{low_high[0] * 100:.1f} to {low_high[1] * 100:.1f}"
    return f"| {v.name} | {v.sends} | {v.outcomes} | {rate} | {shown} | {p_best_text(v.p_best)} |"
