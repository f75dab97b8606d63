"""Message variants: which variant each new send gets, and when a test has its winner.

A step's ``variants`` (campaigns/spec.py, ``VariantTest``) names two or more messages. Each plan
looks once at the test's outcomes so far (its own past sends that were planned for contact,
never the held-out ones, which have no variant) and assigns every send it plans:

- until a winner is declared, each variant first gets ``min_share`` of the plan's sends, and
  the rest go by Thompson sampling: one draw from each variant's Beta posterior of the outcome
  per send, the highest draw wins it (so a variant gets the share of sends it has of being best);
- a winner is declared at the first plan where the stopping rule is met (``StoppingRule``:
  P(best) from the same posteriors, a minimum of outcomes per variant, only within the first
  ``max_looks`` plans), recorded in ``variant_winners`` and kept: from then on every other
  variant keeps ``monitor_share`` of the sends and the winner gets the rest.

Everything is drawn from two streams of one generator seeded by campaign and plan date (one
for the look's P(best), one for the assignment, so that whether a look declares cannot shift
the assignment's draws), and planning the same date again assigns the same variants. The
draws are numpy arrays over the whole plan: no per-send Python loop, no per-send SQL.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import polars as pl

from campaigns.spec import CareStep, StoppingRule, VariantTest
from warehouse.db import query_frame, register_frame
from warehouse.figures import SATISFIED_SQL

P_BEST_DRAWS = 20_000  # Monte Carlo error of P(best) about 0.0004 near the 0.997 threshold

# Each outcome as (which sends are its units, which of those succeeded). CSAT counts ratings
# (of 4-5); the response rate counts surveys sent at least a reply window ago (rated), so a
# send still waiting for its answer is not counted as unanswered.
OUTCOMES = {
    "csat": ("r.action_id IS NOT NULL", SATISFIED_SQL),
    "response": ("a.survey AND a.sent_at <= $matured", "r.action_id IS NOT NULL"),
}
TALLY_SQL = """
SELECT a.variant, count(*) AS sends,
    count(*) FILTER (WHERE {unit}) AS outcomes,
    count(*) FILTER (WHERE {unit} AND {success}) AS successes
FROM care_actions a
LEFT JOIN action_ratings r ON r.action_id = a.action_id AND r.received_at <= $now
WHERE a.campaign_id = $campaign AND a.round = 1 AND a.variant IS NOT NULL
  AND a.suppression_reason IS NULL AND a.sent_at <= $now
  AND (CAST($began AS TIMESTAMPTZ) IS NULL OR a.created_at > $began)
GROUP BY a.variant
"""
# The test's earlier plans: business dates of the first-round runs that assigned variants.
EARLIER_LOOKS_SQL = """
SELECT count(DISTINCT r.as_of) FROM campaign_runs r
WHERE r.campaign_id = $campaign AND r.round = 1 AND r.as_of < $as_of
  AND r.run_id IN (SELECT run_id FROM care_actions
                   WHERE campaign_id = $campaign AND round = 1 AND variant IS NOT NULL
                     AND (CAST($began AS TIMESTAMPTZ) IS NULL OR created_at > $began))
"""
# A test is its set of variants: one that sent a variant the file no longer has, or whose
# recorded winner was of another set, has ended, and the current test began after it.
ENDED_SQL = """
SELECT max(created_at) FROM care_actions
WHERE campaign_id = $campaign AND round = 1 AND variant IS NOT NULL
  AND NOT list_contains($names, variant)
"""


@dataclass(frozen=True)
class Tally:
    """Each variant's sends, outcomes and successes, in the order of ``names``."""

    names: tuple[str, ...]
    sends: np.ndarray
    outcomes: np.ndarray
    successes: np.ndarray

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Beta(1 + successes, 1 + failures): a uniform prior updated by the outcomes."""
        return 1.0 + self.successes, 1.0 + self.outcomes - self.successes


@dataclass(frozen=True)
class Winner:
    variant: str
    declared_on: date
    look: int
    p_best: float


def empty_tally(names: tuple[str, ...]) -> Tally:
    zeros = np.zeros(len(names), dtype=np.int64)
    return Tally(names, zeros, zeros, zeros)


def probability_best(tally: Tally, rng: np.random.Generator) -> np.ndarray:
    """Each variant's posterior probability of having the highest rate (Monte Carlo). Half a
    win is added to each: P_BEST_DRAWS draws cannot tell 1.0 from 0.99999, and a variant that
    won every draw is not certainly best (the JSON gives the figure in full)."""
    alpha, beta = tally.posterior()
    k = len(tally.names)
    draws = rng.beta(alpha, beta, size=(P_BEST_DRAWS, k))
    wins = np.bincount(draws.argmax(axis=1), minlength=k)
    best: np.ndarray = (wins + 0.5) / (P_BEST_DRAWS + 0.5 * k)
    return best


def stopping_met(tally: Tally, p_best: np.ndarray, look: int, rule: StoppingRule) -> int | None:
    """The index of the winner if the rule is met at this look (the test's ``look``-th plan)."""
    leader = int(p_best.argmax())
    enough = bool(tally.outcomes.min() >= rule.min_outcomes)
    if look <= rule.max_looks and enough and p_best[leader] >= rule.p_best:
        return leader
    return None


def allocate(
    count: int, tally: Tally, test: VariantTest, winner: int | None, rng: np.random.Generator
) -> np.ndarray:
    """The variant (index into ``tally.names``) of each of ``count`` sends, in random order."""
    k = len(tally.names)
    if winner is None:
        floor = min(math.ceil(test.min_share * count), count // k)
        fixed = np.repeat(np.arange(k), floor)
        alpha, beta = tally.posterior()
        draws = rng.beta(alpha, beta, size=(count - fixed.size, k))
        rest = draws.argmax(axis=1)
    else:
        others = np.array([i for i in range(k) if i != winner])
        fixed = np.repeat(others, math.floor(test.monitor_share * count))
        rest = np.full(count - fixed.size, winner)
    arms: np.ndarray = rng.permutation(np.concatenate([fixed, rest]).astype(np.int64))
    return arms


def plan_seed(campaign: str, as_of: date) -> int:
    """The generator's seed for one campaign's plan of one date: a rerun draws the same."""
    return int(
        hashlib.sha256(f"variants|{campaign}|{as_of.isoformat()}".encode()).hexdigest()[:16], 16
    )


def tally(
    con: duckdb.DuckDBPyConnection, campaign: str, step: CareStep, now: datetime,
    reply_window_hours: int,
) -> Tally:  # fmt: skip
    """The test's outcomes as of ``now``, from its planned-for-contact sends (never the
    held-out rows), one set-based query."""
    assert step.variants is not None
    names = tuple(step.variant_messages())
    unit, success = OUTCOMES[step.variants.outcome]
    params = {"campaign": campaign, "now": now, "began": current_test_began(con, campaign, names)}
    if "$matured" in unit:
        params["matured"] = now - timedelta(hours=reply_window_hours)
    rows = con.execute(TALLY_SQL.format(unit=unit, success=success), params).fetchall()
    found = {str(r[0]): r[1:] for r in rows}
    columns = np.array([found.get(n, (0, 0, 0)) for n in names], dtype=np.int64).reshape(-1, 3)
    return Tally(names, columns[:, 0], columns[:, 1], columns[:, 2])


def recorded_winner(
    con: duckdb.DuckDBPyConnection, campaign: str, names: tuple[str, ...]
) -> Winner | None:
    """The winner of the campaign's current test (the variants ``names``), if declared: a
    winner recorded for another set of variants, or for this set before its current test
    began, belongs to a test that has ended."""
    row = _winner_row(con, campaign)
    if row is None or set(json.loads(row[4])) != set(names):
        return None
    began = current_test_began(con, campaign, names)
    if began is not None and row[5] < began:  # the same set's earlier test, since ended
        return None
    return Winner(str(row[0]), row[1], int(row[2]), float(row[3]))


def _winner_row(con: duckdb.DuckDBPyConnection, campaign: str) -> tuple[Any, ...] | None:
    return con.execute(
        "SELECT variant, declared_on, look, p_best, outcomes, declared_at FROM variant_winners "
        "WHERE campaign_id = ?",
        [campaign],
    ).fetchone()


def current_test_began(
    con: duckdb.DuckDBPyConnection, campaign: str, names: tuple[str, ...]
) -> datetime | None:
    """When the campaign's current test (the variants ``names``) began: after the last send
    of a variant it no longer has, and after the declaration of another set's winner; None
    when it is the campaign's first test."""
    ended = con.execute(ENDED_SQL, {"campaign": campaign, "names": list(names)}).fetchone()
    moments = [ended[0] if ended else None]
    row = _winner_row(con, campaign)
    if row is not None and set(json.loads(row[4])) != set(names):
        moments.append(row[5])
    return max((m for m in moments if m is not None), default=None)


def assign_variants(
    con: duckdb.DuckDBPyConnection, campaign: str, step: CareStep, as_of: date, now: datetime,
    *, reply_window_hours: int, record: bool,
) -> dict[str, object]:  # fmt: skip
    """Give ``plan_final``'s sends (rows with no suppression reason) their variant; every
    other row, the held-out ones first, keeps NULL. ``record``: write a newly met winner
    (a dry run only looks)."""
    con.execute("ALTER TABLE plan_final ADD COLUMN variant VARCHAR")
    if step.variants is None:
        return {}
    test = step.variants
    # P(best) and the assignment draw from streams of their own: a rerun of the plan that
    # declared a winner skips the first and must still assign the same
    look_rng, assign_rng = np.random.default_rng(plan_seed(campaign, as_of)).spawn(2)
    names = tuple(step.variant_messages())
    winner = recorded_winner(con, campaign, names)
    # Once declared, the winner's share needs no outcomes: the test's history is not read.
    counts = empty_tally(names) if winner else tally(con, campaign, step, now, reply_window_hours)
    if winner is None:
        look = _earlier_looks(con, campaign, as_of, current_test_began(con, campaign, names)) + 1
        best = probability_best(counts, look_rng)
        index = stopping_met(counts, best, look, test.stop)
        if index is not None:
            winner = Winner(counts.names[index], as_of, look, float(best[index]))
            if record:
                _record_winner(con, campaign, winner, counts, now)
    sends = query_frame(
        con, "SELECT action_id FROM plan_final WHERE suppression_reason IS NULL ORDER BY action_id"
    )
    chosen = None if winner is None else counts.names.index(winner.variant)
    arms = allocate(sends.height, counts, test, chosen, assign_rng)
    given = np.array(counts.names, dtype=object)[arms] if arms.size else np.array([], dtype=object)
    register_frame(con, "assigned", sends.with_columns(pl.Series("variant", given, pl.String)))
    con.execute(
        "UPDATE plan_final SET variant = s.variant FROM assigned s "
        "WHERE plan_final.action_id = s.action_id"
    )
    con.unregister("assigned")
    figures: dict[str, object] = {
        "variants": {n: int((arms == i).sum()) for i, n in enumerate(counts.names)}
    }
    if winner is not None:
        figures["variant_winner"] = winner.variant
    return figures


def _earlier_looks(
    con: duckdb.DuckDBPyConnection, campaign: str, as_of: date, began: datetime | None
) -> int:
    params = {"campaign": campaign, "as_of": as_of, "began": began}
    row = con.execute(EARLIER_LOOKS_SQL, params).fetchone()
    return int(row[0]) if row else 0


def _record_winner(
    con: duckdb.DuckDBPyConnection, campaign: str, winner: Winner, counts: Tally, now: datetime
) -> None:
    outcomes = {
        name: {"outcomes": int(o), "successes": int(s)}
        for name, o, s in zip(counts.names, counts.outcomes, counts.successes, strict=True)
    }
    con.execute(
        # a winner of an ended test (another set of variants) gives way to this test's
        "INSERT OR REPLACE INTO variant_winners VALUES (?, ?, ?, ?, ?, ?, ?)",
        [campaign, winner.variant, winner.declared_on, winner.look, winner.p_best,
         json.dumps(outcomes), now],
    )  # fmt: skip


@dataclass(frozen=True)
class Simulated:
    """One simulated test: its winner (index) and the look that declared it, and the sends
    each variant got at each look (looks x variants)."""

    winner: int | None
    declared_look: int | None
    sends: np.ndarray


def simulate(
    rates: list[float], test: VariantTest, *, looks: int, sends_per_look: int,
    outcome_share: float, seed: int,
) -> Simulated:  # fmt: skip
    """The test on a simulated population whose true rates are known: at each look (a plan)
    the same stopping rule and allocation as ``assign_variants``, on the outcomes of the
    looks before it (``outcome_share`` of sends bring an outcome, a success with the
    variant's rate). For the tests and the README's figures."""
    rng = np.random.default_rng(seed)
    k = len(rates)
    counts = empty_tally(tuple(f"v{i}" for i in range(k)))
    winner: int | None = None
    declared: int | None = None
    history = np.zeros((looks, k), dtype=np.int64)
    for look in range(1, looks + 1):
        if winner is None:
            winner = stopping_met(counts, probability_best(counts, rng), look, test.stop)
            declared = look if winner is not None else None
        arms = allocate(sends_per_look, counts, test, winner, rng)
        sent = np.bincount(arms, minlength=k)
        outcomes = rng.binomial(sent, outcome_share)
        successes = rng.binomial(outcomes, rates)
        history[look - 1] = sent
        counts = Tally(counts.names, counts.sends + sent, counts.outcomes + outcomes,
                       counts.successes + successes)  # fmt: skip
    return Simulated(winner, declared, history)
