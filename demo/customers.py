"""Who the demo's customers are: the planted signal behind their satisfaction.

A customer's mood (-1 delighted .. 3 grumpy) comes from a lasting trait of their own, their
tier, their tenure and whether they complained recently. The demo's past (a year of rated
store visits) and its simulated customers both draw ratings from it, so the at_risk model
has something real to learn: new, standard-tier customers who complained lately are the
ones likely to be dissatisfied again. Grumpy customers also come to the stores more.

The monthly report has planted effects to find: from February 2026 one store (TROUBLED_STORE)
serves its customers worse (their mood one step grumpier) and billing complaints appear
everywhere (a hot topic); care cuts the share of customers who leave within 90 days by
CARE_RETENTION_EFFECT (the lift against the held-out customers).
"""

from __future__ import annotations

from datetime import date

import numpy as np

# Score weights (1..5) by mood: the higher the mood, the more complaints.
MOOD_WEIGHTS = {
    -1: [2, 3, 10, 35, 50],
    0: [4, 6, 15, 37, 38],
    1: [10, 12, 20, 33, 25],
    2: [22, 20, 20, 22, 16],
    3: [38, 30, 16, 10, 6],
}
# Second rounds are personal (a call back, an apology): most end well, whatever the mood.
SECOND_ROUND_WEIGHTS = [6, 8, 16, 35, 35]
# The message variant the demo plants (variant "personal" of store_visit's care): a customer who
# reads that the store manager reads every answer rates the visit better; a first-round rating
# below 4 becomes a 4 with this chance (at the visits' CSAT of about 55%, some +9 points), so
# the bandit has a known best variant to find (campaigns/variants.py).
PLANTED_VARIANT_WORDS = ("店长会亲自阅读", "manager reads every")
PLANTED_VARIANT_LIFT = 0.2
RECENT_DAYS = 60  # a complaint this recent still sours the next contact
TROUBLED_STORE = "ST0002"  # Shanghai's second store
TROUBLE_FROM = date(2026, 2, 1)
BILLING_COMPLAINTS = {
    "zh-CN": ["新套餐扣费不对", "话费多扣了"],
    "en": ["charged twice for my new plan"],
}
BILLING_SHARE = 0.35  # of complaints from TROUBLE_FROM on
# Leaving within 90 days of first care, by mood; care cuts it by CARE_RETENTION_EFFECT.
CHURN_90_DAYS = {-1: 0.02, 0: 0.04, 1: 0.07, 2: 0.11, 3: 0.15}
CARE_RETENTION_EFFECT = 0.03
# When customers answer (send_time: learned has it to find): each has a preferred part of the
# day, in their own local time, by country (shares of morning, lunch, evening, any time), with
# their own centre up to an hour either side. A message near it is answered more often.
DAYPART_CENTRES = (9.5, 12.5, 19.5)  # morning commuters, lunch breaks, evening answerers
DAYPART_MIX = {"CN": (0.2, 0.2, 0.4), "US": (0.45, 0.15, 0.2)}  # the rest: any time
# Their odds of answering times ANSWER_NEAR at it, ANSWER_AWAY far from it (hours, sd of
# DAYPART_WIDTH): on average over the day about 1, so the demo's reply rates stay as they were.
ANSWER_AWAY, ANSWER_NEAR, DAYPART_WIDTH = 0.8, 1.7, 1.5
COMPLAINTS = {
    "zh-CN": ["排队太久了", "店员态度很差", "问题没解决", "礼品没到账", "打了三次电话"],
    "en": [
        "waited 40 minutes",
        "staff was rude",
        "problem not fixed",
        "gift never arrived",
        "called three times",
    ],
}


def trait(index: np.ndarray) -> np.ndarray:
    """The lasting trait by subscriber number: 10% grumpy (2), 20% picky (1), 50% easy (0),
    20% delighted (-1). A multiplicative hash, so the demo's past and its simulated
    customers agree without sharing state."""
    draw = ((index.astype(np.uint64) * np.uint64(2654435761) + np.uint64(97)) % 2**32) / 2**32
    return np.select([draw < 0.1, draw < 0.3, draw < 0.8], [2, 1, 0], -1)


def _hash_draw(index: np.ndarray, multiplier: int, offset: int) -> np.ndarray:
    draw: np.ndarray = (
        (index.astype(np.uint64) * np.uint64(multiplier) + np.uint64(offset)) % 2**32
    ) / 2**32
    return draw


def preferred_hour(index: np.ndarray, in_us: np.ndarray) -> np.ndarray:
    """Each customer's preferred local hour (a float), NaN for those who answer any time.
    Hashes of the subscriber number, as ``trait``, but independent of it."""
    draw = _hash_draw(index, 2246822519, 13)
    mix = np.where(in_us[:, None], DAYPART_MIX["US"], DAYPART_MIX["CN"])
    part = (draw[:, None] >= np.cumsum(mix, axis=1)).sum(axis=1)
    centres = np.append(DAYPART_CENTRES, np.nan)[part]
    hours: np.ndarray = centres + 2 * _hash_draw(index, 3266489917, 7) - 1
    return hours


def answer_factor(index: np.ndarray, in_us: np.ndarray, local_hour: np.ndarray) -> np.ndarray:
    """How much more (or less) likely a customer is to answer a message sent at this local
    hour (0-23): ANSWER_NEAR at their preferred hour, ANSWER_AWAY far from it, 1 for those
    who answer any time."""
    distance = local_hour + 0.5 - preferred_hour(index, in_us)  # an hour's middle
    near = np.exp(-(distance**2) / (2 * DAYPART_WIDTH**2))
    factor: np.ndarray = np.where(
        np.isnan(distance), 1.0, ANSWER_AWAY + (ANSWER_NEAR - ANSWER_AWAY) * near
    )
    return factor


def in_us(timezones: np.ndarray) -> np.ndarray:
    """The demo's US customers, by their timezone (America/..., Pacific/Honolulu)."""
    zones = np.asarray(timezones, dtype=str)
    found: np.ndarray = np.char.startswith(zones, "America/") | np.char.startswith(
        zones, "Pacific/"
    )
    return found


def subscriber_number(subscriber_id: str) -> int:
    """``S000001785`` -> 1785 (the demo's ids)."""
    return int(subscriber_id.lstrip("S") or 0)


def moods(
    traits: np.ndarray,
    tiers: np.ndarray,
    tenure_years: np.ndarray,
    recent_complaint: np.ndarray,
    troubled: np.ndarray | None = None,
) -> np.ndarray:
    """``troubled``: served by TROUBLED_STORE since TROUBLE_FROM."""
    mood = (
        traits
        + (tiers == "standard")
        - np.isin(tiers, ["gold", "platinum"])
        + (tenure_years < 2)
        + recent_complaint.astype(int)
        + (troubled.astype(int) if troubled is not None else 0)
    )
    clipped: np.ndarray = np.clip(mood, -1, 3)
    return clipped


def draw_scores(rng: np.random.Generator, mood: np.ndarray) -> np.ndarray:
    """A 1-5 rating per customer, drawn from their mood's weights."""
    table = np.array([MOOD_WEIGHTS[m] for m in range(-1, 4)], dtype=float)
    cumulative = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    rows = cumulative[mood + 1]
    scores: np.ndarray = 1 + (rng.random(len(mood))[:, None] > rows).sum(axis=1)
    return scores


def complaint(locale: str, on: date, draw: float, pick: int) -> str:
    """A dissatisfied customer's comment; billing ones from TROUBLE_FROM on. ``draw`` in
    [0, 1) and ``pick`` (any int) come from the caller's seeded generator."""
    if on >= TROUBLE_FROM and draw < BILLING_SHARE:
        options = BILLING_COMPLAINTS[locale]
    else:
        options = COMPLAINTS[locale]
    return options[pick % len(options)]


def churn_days(rng: np.random.Generator, mood: np.ndarray, cared_for: np.ndarray) -> np.ndarray:
    """Days after first care each customer leaves, or -1 for those who stay past 90 days."""
    rate = np.array([CHURN_90_DAYS[m] for m in mood]) - CARE_RETENTION_EFFECT * cared_for
    leaves = rng.random(len(mood)) < rate
    days: np.ndarray = np.where(leaves, rng.integers(1, 91, len(mood)), -1)
    return days


def reads_planted_variant(body: str) -> bool:
    """Whether a message carries the planted variant's words (PLANTED_VARIANT_WORDS)."""
    return any(words in body for words in PLANTED_VARIANT_WORDS)
