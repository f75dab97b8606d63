"""The message-variant bandit on simulated populations with a known truth (campaigns/variants.py's
own allocation and stopping rule, through ``simulate``), with store_visit's test settings and
the demo's volume: 300 sends a plan, 43% of them rated, CSAT 55% for the standard message.

- No difference: the share of experiments that declare a winner anyway (the false-winner
  rate), over every look the rule may declare at (``max_looks``), with its Wilson interval;
  and the same for the naive rule (P(best) >= 0.95 at every look, hardly any minimum).
- A planted lift: how often and when the right winner is declared, and the share of sends
  the best variant got over the last 30% of the plans.

Run: ``.venv/bin/python -m benchmarks.variant_bench [SIMULATIONS]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from campaigns.catalog import load_campaigns
from campaigns.spec import StoppingRule
from campaigns.variants import Simulated, simulate
from core.settings import load_settings
from insights.stats import wilson

BASE, SENDS, RATED = 0.55, 300, 0.43


def late_share(run: Simulated, best: int) -> float:
    late = run.sends[int(len(run.sends) * 0.7) :]
    return float(late[:, best].sum() / late.sum())


def main(home: Path, simulations: int = 1000) -> list[str]:
    del home  # nothing is written: the simulations live in memory
    test = load_campaigns(load_settings())["store_visit"].campaign.care.variants
    assert test is not None
    lines = [f"variants: store_visit's rule {test.stop.model_dump()}, min_share {test.min_share}"]
    null = [
        simulate([BASE, BASE], test, looks=test.stop.max_looks, sends_per_look=SENDS,
                 outcome_share=RATED, seed=seed).winner is not None
        for seed in range(simulations)
    ]  # fmt: skip
    low, high = wilson(sum(null), simulations) or (0.0, 1.0)
    lines.append(
        f"  no difference: {sum(null)} of {simulations} experiments declared a winner "
        f"({sum(null) / simulations:.1%}, 95% CI {low:.1%} to {high:.1%}) over "
        f"{test.stop.max_looks} looks"
    )
    naive = test.model_copy(update={"stop": StoppingRule(p_best=0.95, min_outcomes=10)})
    for looks in (14, 30):
        noise = sum(
            simulate([BASE, BASE], naive, looks=looks, sends_per_look=SENDS,
                     outcome_share=RATED, seed=seed).winner is not None
            for seed in range(simulations // 5)
        )  # fmt: skip
        lines.append(
            f"  no difference, naive rule (P(best) >= 0.95, 10 outcomes): {noise} of "
            f"{simulations // 5} declared a winner within {looks} looks"
        )
    for lift in (0.06, 0.09):
        for looks in (14, 30):
            runs = [
                simulate([BASE, BASE + lift], test, looks=looks, sends_per_look=SENDS,
                         outcome_share=RATED, seed=seed)
                for seed in range(simulations // 5)
            ]  # fmt: skip
            right = [r.declared_look for r in runs if r.winner == 1]
            wrong = sum(r.winner == 0 for r in runs)
            share = np.mean([late_share(r, 1) for r in runs])
            lines.append(
                f"  +{lift * 100:.0f} points, {looks} plans: right winner in {len(right)} of "
                f"{len(runs)} (median plan {np.median(right) if right else '-'}), wrong "
                f"{wrong}; best variant's share of the last 30% of sends {share:.1%}"
            )
    return lines


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print("\n".join(main(Path(".careloop/bench"), count)))
